/**
 * The schema builder's cards: what a non-programmer edits instead of JSON Schema.
 *
 * A `SchemaNode` is one schema (a card); a property is a named node of an object
 * card; definitions (`$defs`) are named nodes of the document. `toJsonSchema` and
 * `fromJsonSchema` translate both ways and are inverse on the supported subset.
 * Keywords a card cannot show are kept verbatim in `extra` (and reported on import),
 * and a schema that is no card at all is a `json` card holding its raw JSON, so an
 * import never loses anything.
 */

import type { Json, JsonObject } from "../json";

export const KINDS = ["string", "number", "integer", "boolean", "object", "array", "enum", "ref", "json"] as const;
export type Kind = (typeof KINDS)[number];

export const KIND_LABELS: Record<Kind, string> = {
  string: "string",
  number: "number",
  integer: "integer",
  boolean: "boolean",
  object: "object",
  array: "array",
  enum: "enum",
  ref: "definition ($ref)",
  json: "custom JSON",
};

/** Kinds that may be made nullable (`"type": [T, "null"]`). */
export const NULLABLE_KINDS: ReadonlySet<Kind> = new Set(["string", "number", "integer", "boolean", "object", "array"]);

export const FORMATS = ["date-time", "date", "email", "uri", "uuid"] as const;

export const STRING_KEYWORDS = ["minLength", "maxLength", "pattern", "format"] as const;
export const NUMBER_KEYWORDS = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"] as const;
export const ARRAY_KEYWORDS = ["items", "minItems", "maxItems", "uniqueItems"] as const;
export const OBJECT_KEYWORDS = ["properties", "required", "additionalProperties"] as const;

export interface SchemaNode {
  /** Stable identity of the card (not part of the schema). */
  id: string;
  kind: Kind;
  description?: string;
  /** `"type": [T, "null"]`. */
  nullable?: boolean;
  // string
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  format?: string;
  // number, integer
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  multipleOf?: number;
  // array
  items?: SchemaNode;
  minItems?: number;
  maxItems?: number;
  uniqueItems?: boolean;
  // object (`properties` undefined: the keyword is absent)
  properties?: PropertyCard[];
  additionalProperties?: boolean;
  // enum (of strings)
  values?: string[];
  // ref: the name of a definition
  ref?: string;
  // json: the schema itself
  raw?: Json;
  /** Keywords the card does not show, written back unchanged. */
  extra?: JsonObject;
}

export interface PropertyCard {
  id: string;
  name: string;
  required: boolean;
  node: SchemaNode;
}

export interface DefinitionCard {
  id: string;
  name: string;
  node: SchemaNode;
}

/** A whole response schema: the root object card and the definitions. */
export interface SchemaDoc {
  root: SchemaNode;
  defs: DefinitionCard[];
}

let counter = 0;

/** A fresh card id. */
export function newId(prefix = "n"): string {
  counter += 1;
  return `${prefix}${counter}`;
}

export function newNode(kind: Kind): SchemaNode {
  const node: SchemaNode = { id: newId(), kind };
  if (kind === "object") node.properties = [];
  if (kind === "array") node.items = newNode("string");
  if (kind === "enum") node.values = [];
  if (kind === "json") node.raw = {};
  return node;
}

export function emptyDoc(): SchemaDoc {
  return { root: newNode("object"), defs: [] };
}

/** A name not yet used in `taken`: `base_1`, `base_2`, … */
export function freshName(base: string, taken: Iterable<string>): string {
  const used = new Set(taken);
  for (let i = 1; ; i += 1) {
    const name = `${base}_${i}`;
    if (!used.has(name)) return name;
  }
}

export function newProperty(taken: Iterable<string>, kind: Kind = "string"): PropertyCard {
  return { id: newId("p"), name: freshName("field", taken), required: true, node: newNode(kind) };
}

export function newDefinition(taken: Iterable<string>): DefinitionCard {
  return { id: newId("d"), name: freshName("Definition", taken), node: newNode("object") };
}

/** The node turned into another kind: description and kept keywords stay, constraints that no longer fit go. */
export function changeKind(node: SchemaNode, kind: Kind, defs: DefinitionCard[] = []): SchemaNode {
  if (node.kind === kind) return node;
  const next = newNode(kind);
  next.id = node.id;
  if (node.description !== undefined) next.description = node.description;
  if (node.extra !== undefined) next.extra = node.extra;
  if (NULLABLE_KINDS.has(kind) && node.nullable) next.nullable = true;
  const numeric = (k: Kind) => k === "number" || k === "integer";
  if (numeric(node.kind) && numeric(kind)) {
    for (const key of NUMBER_KEYWORDS) if (node[key] !== undefined) next[key] = node[key];
  }
  if (kind === "ref") next.ref = defs[0]?.name ?? "";
  return next;
}

/** Every node of the document, depth first (root, its properties, items, then definitions). */
export function* walk(doc: SchemaDoc): Generator<SchemaNode> {
  function* visit(node: SchemaNode): Generator<SchemaNode> {
    yield node;
    for (const property of node.properties ?? []) yield* visit(property.node);
    if (node.items) yield* visit(node.items);
  }
  yield* visit(doc.root);
  for (const def of doc.defs) yield* visit(def.node);
}

/** Replace the node with `id` (wherever it is) by `update(node)`. */
export function updateNode(doc: SchemaDoc, id: string, update: (node: SchemaNode) => SchemaNode): SchemaDoc {
  function visit(node: SchemaNode): SchemaNode {
    if (node.id === id) return update(node);
    let changed = false;
    let properties = node.properties;
    if (properties) {
      const next = properties.map((p) => {
        const child = visit(p.node);
        if (child === p.node) return p;
        changed = true;
        return { ...p, node: child };
      });
      if (changed) properties = next;
    }
    let items = node.items;
    if (items) {
      const child = visit(items);
      if (child !== items) {
        changed = true;
        items = child;
      }
    }
    if (!changed) return node;
    const copy: SchemaNode = { ...node };
    if (properties) copy.properties = properties;
    if (items) copy.items = items;
    return copy;
  }
  const root = visit(doc.root);
  const defs = doc.defs.map((d) => {
    const node = visit(d.node);
    return node === d.node ? d : { ...d, node };
  });
  const defsChanged = defs.some((d, i) => d !== doc.defs[i]);
  if (root === doc.root && !defsChanged) return doc;
  return { root, defs: defsChanged ? defs : doc.defs };
}

/** Rename a definition and every reference to it. */
export function renameDefinition(doc: SchemaDoc, defId: string, name: string): SchemaDoc {
  const old = doc.defs.find((d) => d.id === defId);
  if (!old) return doc;
  let next: SchemaDoc = { ...doc, defs: doc.defs.map((d) => (d.id === defId ? { ...d, name } : d)) };
  for (const node of [...walk(next)]) {
    if (node.kind === "ref" && node.ref === old.name) {
      next = updateNode(next, node.id, (n) => ({ ...n, ref: name }));
    }
  }
  return next;
}

/** The properties that refer to definition `name`. */
export function referencesTo(doc: SchemaDoc, name: string): SchemaNode[] {
  return [...walk(doc)].filter((n) => n.kind === "ref" && n.ref === name);
}

/** Problems the builder can see by itself (before asking the server), by node id. */
export function localProblems(doc: SchemaDoc): Map<string, string[]> {
  const problems = new Map<string, string[]>();
  const add = (id: string, message: string) => problems.set(id, [...(problems.get(id) ?? []), message]);
  const defNames = new Set(doc.defs.map((d) => d.name));
  function checkNames(owner: string, names: string[], what: "property" | "definition") {
    const seen = new Set<string>();
    const plural = what === "property" ? "properties" : "definitions";
    for (const name of names) {
      if (name === "") add(owner, `a ${what} has no name`);
      else if (seen.has(name)) add(owner, `two ${plural} are named "${name}"`);
      seen.add(name);
    }
  }
  for (const node of walk(doc)) {
    if (node.properties) checkNames(node.id, node.properties.map((p) => p.name), "property");
    if (node.kind === "ref" && !defNames.has(node.ref ?? "")) add(node.id, "choose a definition");
    if (node.kind === "enum" && (node.values ?? []).length === 0) add(node.id, "add at least one value");
    if (node.kind === "enum" && new Set(node.values).size !== (node.values ?? []).length) {
      add(node.id, "enum values must be distinct");
    }
    const pairs: [keyof SchemaNode, keyof SchemaNode][] = [
      ["minLength", "maxLength"],
      ["minimum", "maximum"],
      ["minItems", "maxItems"],
    ];
    for (const [low, high] of pairs) {
      const a = node[low];
      const b = node[high];
      if (typeof a === "number" && typeof b === "number" && a > b) add(node.id, `${low} is above ${high}`);
    }
  }
  checkNames(doc.root.id, doc.defs.map((d) => d.name), "definition");
  return problems;
}
