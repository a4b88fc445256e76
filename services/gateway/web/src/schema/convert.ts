/**
 * Cards ⇄ JSON Schema.
 *
 * `toJsonSchema` is what the JSON preview shows and what is saved. `fromJsonSchema`
 * imports any JSON Schema object: a keyword is absorbed into a card only when writing
 * the card back reproduces it exactly; everything else is kept verbatim (`extra`, or a
 * whole `json` card) and listed in the report, never dropped. So
 * `toJsonSchema(fromJsonSchema(s).doc)` equals `s` for every JSON object `s` whose
 * `required` lists follow property order, and `fromJsonSchema(toJsonSchema(d))`
 * equals `d` (ids aside) for every valid document `d`.
 */

import { escapePointerToken, isObject, parsePointer, type Json, type JsonObject } from "../json";
import {
  FORMATS,
  NULLABLE_KINDS,
  newId,
  type DefinitionCard,
  type Kind,
  type PropertyCard,
  type SchemaDoc,
  type SchemaNode,
} from "./model";

export const DEFS_PREFIX = "#/$defs/";

// --- cards → JSON Schema -------------------------------------------------------------

export function refTarget(name: string): string {
  return DEFS_PREFIX + escapePointerToken(name);
}

export function nodeToSchema(node: SchemaNode): Json {
  if (node.kind === "json") return node.raw ?? {};
  const out: JsonObject = {};
  switch (node.kind) {
    case "ref":
      out.$ref = refTarget(node.ref ?? "");
      break;
    case "enum":
      out.type = "string";
      out.enum = [...(node.values ?? [])];
      break;
    default:
      out.type = node.nullable && NULLABLE_KINDS.has(node.kind) ? [node.kind, "null"] : node.kind;
  }
  if (node.description !== undefined) out.description = node.description;
  switch (node.kind) {
    case "string":
      copyDefined(node, out, ["minLength", "maxLength", "pattern", "format"]);
      break;
    case "number":
    case "integer":
      copyDefined(node, out, ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"]);
      break;
    case "array":
      if (node.items) out.items = nodeToSchema(node.items);
      copyDefined(node, out, ["minItems", "maxItems"]);
      if (node.uniqueItems) out.uniqueItems = true;
      break;
    case "object":
      if (node.properties) {
        const properties: JsonObject = {};
        for (const property of node.properties) properties[property.name] = nodeToSchema(property.node);
        out.properties = properties;
        const required = node.properties.filter((p) => p.required).map((p) => p.name);
        if (required.length > 0) out.required = required;
      }
      if (node.additionalProperties !== undefined) out.additionalProperties = node.additionalProperties;
      break;
    default:
      break;
  }
  return Object.assign(out, node.extra ?? {});
}

function copyDefined(node: SchemaNode, out: JsonObject, keys: (keyof SchemaNode)[]) {
  for (const key of keys) {
    const value = node[key];
    if (value !== undefined) out[key] = value as Json;
  }
}

/** The JSON Schema of the whole document (root object plus `$defs`). */
export function toJsonSchema(doc: SchemaDoc): JsonObject {
  const root = nodeToSchema(doc.root);
  const out: JsonObject = isObject(root) ? { ...root } : {};
  if (doc.defs.length > 0) {
    const defs: JsonObject = {};
    for (const def of doc.defs) defs[def.name] = nodeToSchema(def.node);
    out.$defs = defs;
  }
  return out;
}

// --- JSON Schema → cards -------------------------------------------------------------

export interface ImportNote {
  /** RFC 6901 pointer into the imported schema. */
  pointer: string;
  message: string;
}

export interface ImportResult {
  doc: SchemaDoc;
  /** What could not become cards (kept as-is). Empty: everything is editable. */
  notes: ImportNote[];
}

export class ImportError extends Error {}

const isNonNegativeInteger = (v: Json | undefined): v is number =>
  typeof v === "number" && Number.isInteger(v) && v >= 0;
const isFiniteNumber = (v: Json | undefined): v is number => typeof v === "number" && Number.isFinite(v);

type Absorb = (value: Json, node: SchemaNode) => boolean;

const STRING_ABSORB: Record<string, Absorb> = {
  minLength: (v, n) => isNonNegativeInteger(v) && ((n.minLength = v), true),
  maxLength: (v, n) => isNonNegativeInteger(v) && ((n.maxLength = v), true),
  pattern: (v, n) => typeof v === "string" && v !== "" && ((n.pattern = v), true),
  format: (v, n) => typeof v === "string" && (FORMATS as readonly string[]).includes(v) && ((n.format = v), true),
};

const NUMBER_ABSORB: Record<string, Absorb> = Object.fromEntries(
  (["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"] as const).map((key) => [
    key,
    (v: Json, n: SchemaNode) => isFiniteNumber(v) && ((n[key] = v), true),
  ]),
);

/** Import a JSON Schema (the root must be an object schema). */
export function fromJsonSchema(schema: Json): ImportResult {
  if (!isObject(schema)) throw new ImportError("a JSON Schema here is a JSON object");
  if (schema.type !== "object") {
    throw new ImportError('the root of a response schema must be "type": "object"');
  }
  const notes: ImportNote[] = [];
  const defNames = new Set<string>();
  const defs: DefinitionCard[] = [];
  const rootSchema: JsonObject = { ...schema };
  const rawDefs = schema.$defs;
  if (isObject(rawDefs)) {
    for (const name of Object.keys(rawDefs)) defNames.add(name);
    delete rootSchema.$defs;
  }
  const ctx: Context = { notes, defNames };
  const root = importNode(rootSchema, "", ctx, true);
  if (isObject(rawDefs)) {
    for (const [name, value] of Object.entries(rawDefs)) {
      defs.push({ id: newId("d"), name, node: importNode(value, `/$defs/${escapePointerToken(name)}`, ctx, false) });
    }
  }
  return { doc: { root, defs }, notes };
}

interface Context {
  notes: ImportNote[];
  defNames: Set<string>;
}

function rawNode(value: Json, pointer: string, ctx: Context, why: string): SchemaNode {
  ctx.notes.push({ pointer: pointer || "/", message: `${why}; kept as custom JSON` });
  return { id: newId(), kind: "json", raw: value };
}

function kindOf(schema: JsonObject, ctx: Context): { kind: Kind; nullable: boolean } | string {
  if ("$ref" in schema) {
    const ref = schema.$ref;
    if (typeof ref !== "string" || !ref.startsWith(DEFS_PREFIX)) return "a $ref outside #/$defs";
    const tokens = ref.slice(DEFS_PREFIX.length);
    if (tokens.includes("/")) return "a $ref into a definition's inside";
    const name = tokens.replace(/~1/g, "/").replace(/~0/g, "~");
    if (!ctx.defNames.has(name) || refTarget(name) !== ref) return `a $ref to an unknown definition (${ref})`;
    return { kind: "ref", nullable: false };
  }
  if ("enum" in schema) {
    const values = schema.enum;
    if (schema.type !== "string") return 'an enum without "type": "string"';
    if (!Array.isArray(values) || !values.every((v) => typeof v === "string")) return "an enum of non-strings";
    return { kind: "enum", nullable: false };
  }
  const type = schema.type;
  if (typeof type === "string" && NULLABLE_KINDS.has(type as Kind)) return { kind: type as Kind, nullable: false };
  if (
    Array.isArray(type) &&
    type.length === 2 &&
    typeof type[0] === "string" &&
    NULLABLE_KINDS.has(type[0] as Kind) &&
    type[1] === "null"
  ) {
    return { kind: type[0] as Kind, nullable: true };
  }
  if (type === undefined) return "a schema without a type";
  return `the type ${JSON.stringify(type)}`;
}

function importNode(value: Json, pointer: string, ctx: Context, isRoot: boolean): SchemaNode {
  if (!isObject(value)) return rawNode(value, pointer, ctx, "a boolean or non-object schema");
  // The root is always the object card ("type": "object" was checked); a $ref or enum there is kept as is.
  const found = isRoot ? { kind: "object" as Kind, nullable: false } : kindOf(value, ctx);
  if (typeof found === "string") return rawNode(value, pointer, ctx, found);
  const node: SchemaNode = { id: newId(), kind: found.kind };
  if (found.nullable) node.nullable = true;
  const rest: JsonObject = { ...value };
  if (found.kind !== "ref") delete rest.type; // a type beside a $ref is kept as is
  if (found.kind === "ref") {
    node.ref = refName(value.$ref);
    delete rest.$ref;
  }
  if (found.kind === "enum") {
    node.values = [...(value.enum as string[])];
    delete rest.enum;
  }
  if (typeof rest.description === "string") {
    node.description = rest.description;
    delete rest.description;
  }
  const absorb = (table: Record<string, Absorb>) => {
    for (const [key, take] of Object.entries(table)) {
      if (key in rest && take(rest[key] as Json, node)) delete rest[key];
    }
  };
  switch (found.kind) {
    case "string":
      absorb(STRING_ABSORB);
      break;
    case "number":
    case "integer":
      absorb(NUMBER_ABSORB);
      break;
    case "array":
      if ("items" in rest && isObject(rest.items)) {
        node.items = importNode(rest.items, `${pointer}/items`, ctx, false);
        delete rest.items;
      }
      for (const key of ["minItems", "maxItems"] as const) {
        const v = rest[key];
        if (isNonNegativeInteger(v)) {
          node[key] = v;
          delete rest[key];
        }
      }
      if (rest.uniqueItems === true) {
        node.uniqueItems = true;
        delete rest.uniqueItems;
      }
      break;
    case "object":
      importObject(node, rest, pointer, ctx);
      break;
    default:
      break;
  }
  const keptKeys = Object.keys(rest);
  if (keptKeys.length > 0) {
    node.extra = rest;
    for (const key of keptKeys) {
      ctx.notes.push({
        pointer: `${pointer}/${escapePointerToken(key)}`,
        message: isRoot && key === "$schema" ? "$schema is kept as is" : `"${key}" has no card; kept as is`,
      });
    }
  }
  return node;
}

function refName(ref: Json | undefined): string {
  if (typeof ref !== "string" || !ref.startsWith(DEFS_PREFIX)) return "";
  return ref.slice(DEFS_PREFIX.length).replace(/~1/g, "/").replace(/~0/g, "~");
}

function importObject(node: SchemaNode, rest: JsonObject, pointer: string, ctx: Context) {
  const properties = rest.properties;
  if (properties !== undefined && !isObject(properties)) return;
  const names = isObject(properties) ? Object.keys(properties) : [];
  const required = rest.required;
  const emptyRequired = Array.isArray(required) && required.length === 0; // kept as is: cards write none
  const requiredOk =
    required === undefined ||
    emptyRequired ||
    (Array.isArray(required) &&
      required.every((r) => typeof r === "string" && names.includes(r)) &&
      new Set(required).size === required.length);
  if (isObject(properties) && requiredOk) {
    if (Array.isArray(required) && !isInOrder(required as string[], names)) {
      // Same schema (required is a set), but the text changes: say so.
      ctx.notes.push({ pointer: `${pointer}/required`, message: "required is rewritten in property order" });
    }
    const requiredSet = new Set((required as string[] | undefined) ?? []);
    node.properties = names.map(
      (name): PropertyCard => ({
        id: newId("p"),
        name,
        required: requiredSet.has(name),
        node: importNode(
          properties[name] as Json,
          `${pointer}/properties/${escapePointerToken(name)}`,
          ctx,
          false,
        ),
      }),
    );
    delete rest.properties;
    if (!emptyRequired) delete rest.required;
  }
  if (typeof rest.additionalProperties === "boolean") {
    node.additionalProperties = rest.additionalProperties;
    delete rest.additionalProperties;
  }
}

function isInOrder(subset: string[], order: string[]): boolean {
  let last = -1;
  for (const name of subset) {
    const at = order.indexOf(name);
    if (at <= last) return false;
    last = at;
  }
  return true;
}

// --- RFC 6901 pointers → cards -------------------------------------------------------

export interface PointerTarget {
  /** The card the pointer is in (the deepest one). */
  nodeId: string;
  /** The rest of the pointer below that card (e.g. `/minLength`). */
  rest: string;
}

/** The card a server pointer (e.g. `/properties/items/items/properties/qty/minimum`) points into. */
export function cardForPointer(doc: SchemaDoc, pointer: string): PointerTarget {
  const tokens = parsePointer(pointer);
  let node = doc.root;
  let i = 0;
  if (tokens[0] === "$defs" && tokens.length >= 2) {
    const def = doc.defs.find((d) => d.name === tokens[1]);
    if (def) {
      node = def.node;
      i = 2;
    }
  }
  while (i < tokens.length) {
    const token = tokens[i];
    if (token === "properties" && node.properties && i + 1 < tokens.length) {
      const property = node.properties.find((p) => p.name === tokens[i + 1]);
      if (!property) break;
      node = property.node;
      i += 2;
    } else if (token === "items" && node.items) {
      node = node.items;
      i += 1;
    } else {
      break;
    }
  }
  const rest = tokens
    .slice(i)
    .map((t) => `/${escapePointerToken(t)}`)
    .join("");
  return { nodeId: node.id, rest };
}

// --- property order of stored schemas --------------------------------------------------

/**
 * The schema with each object's required properties first, in `required` order.
 *
 * The API stores schemas as protobuf Structs, whose maps do not keep key order, while
 * `required` (a list) keeps it. Ordering cards by `required` therefore restores the
 * order the author saved for every required property (all of them, in OpenAI strict
 * style); optional ones follow in the order received.
 */
export function requiredFirst(schema: Json): Json {
  if (Array.isArray(schema)) return schema.map(requiredFirst);
  if (!isObject(schema)) return schema;
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(schema)) out[key] = requiredFirst(value);
  const properties = out.properties;
  const required = out.required;
  if (isObject(properties) && Array.isArray(required)) {
    const ordered: JsonObject = {};
    for (const name of required) {
      if (typeof name === "string" && name in properties) ordered[name] = properties[name] as Json;
    }
    for (const [name, value] of Object.entries(properties)) if (!(name in ordered)) ordered[name] = value;
    out.properties = ordered;
  }
  return out;
}
