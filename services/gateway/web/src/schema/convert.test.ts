import { describe, expect, it } from "vitest";
import { jsonEqual, type Json, type JsonObject } from "../json";
import { Random } from "../test/random";
import { cardForPointer, fromJsonSchema, ImportError, requiredFirst, toJsonSchema } from "./convert";
import { FORMATS, newId, NULLABLE_KINDS, type DefinitionCard, type Kind, type PropertyCard, type SchemaDoc, type SchemaNode } from "./model";

/** Schemas the cards represent completely: import and export must give them back exactly, with no notes. */
const ROUND_TRIPS: [string, JsonObject][] = [
  ["empty object", { type: "object" }],
  ["no properties yet", { type: "object", properties: {} }],
  ["one string", { type: "object", properties: { name: { type: "string" } }, required: ["name"] }],
  [
    "string constraints",
    {
      type: "object",
      properties: {
        code: { type: "string", minLength: 2, maxLength: 8, pattern: "^[A-Z]+$", description: "a code" },
        when: { type: "string", format: "date-time" },
        day: { type: "string", format: "date" },
        mail: { type: "string", format: "email" },
        link: { type: "string", format: "uri" },
        id: { type: "string", format: "uuid" },
      },
      required: ["code", "mail"],
    },
  ],
  [
    "number constraints",
    {
      type: "object",
      properties: {
        score: { type: "number", minimum: 0, maximum: 1, multipleOf: 0.5 },
        count: { type: "integer", exclusiveMinimum: 0, exclusiveMaximum: 100 },
        negative: { type: "number", maximum: -1.5 },
      },
    },
  ],
  ["boolean", { type: "object", properties: { ok: { type: "boolean", description: "yes or no" } }, required: ["ok"] }],
  [
    "enum",
    {
      type: "object",
      properties: { sentiment: { type: "string", enum: ["positive", "negative", "neutral"] } },
      required: ["sentiment"],
      additionalProperties: false,
    },
  ],
  ["enum with an empty string", { type: "object", properties: { e: { type: "string", enum: ["", "x"] } } }],
  [
    "nullable",
    {
      type: "object",
      properties: { note: { type: ["string", "null"], maxLength: 10 }, n: { type: ["integer", "null"] } },
      required: ["note", "n"],
    },
  ],
  [
    "nested objects",
    {
      type: "object",
      properties: {
        author: {
          type: "object",
          description: "who wrote it",
          properties: {
            name: { type: "string" },
            address: { type: "object", properties: { city: { type: "string" } }, required: ["city"], additionalProperties: true },
          },
          required: ["name"],
          additionalProperties: false,
        },
      },
      required: ["author"],
    },
  ],
  [
    "array of objects",
    {
      type: "object",
      properties: {
        items: {
          type: "array",
          minItems: 1,
          maxItems: 10,
          uniqueItems: true,
          items: {
            type: "object",
            properties: { name: { type: "string" }, qty: { type: "integer", minimum: 1 } },
            required: ["name", "qty"],
          },
        },
        tags: { type: "array", items: { type: "string", enum: ["a", "b"] } },
        matrix: { type: "array", items: { type: "array", items: { type: "number" } } },
        anything: { type: "array" },
      },
      required: ["items"],
    },
  ],
  [
    "definitions and references",
    {
      type: "object",
      properties: {
        home: { $ref: "#/$defs/Address" },
        work: { $ref: "#/$defs/Address", description: "the office" },
        odd: { $ref: "#/$defs/a~1b~0c" },
        list: { type: "array", items: { $ref: "#/$defs/Address" } },
      },
      required: ["home"],
      $defs: {
        Address: { type: "object", properties: { street: { type: "string" } }, required: ["street"] },
        "a/b~c": { type: "integer" },
      },
    },
  ],
  ["root description", { type: "object", description: "the answer", additionalProperties: false }],
  [
    "object without declared properties",
    { type: "object", properties: { meta: { type: "object", additionalProperties: true } } },
  ],
];

/** Schemas with parts the cards cannot show: kept verbatim (exact round trip), each part reported. */
const LOSSLESS: [string, JsonObject, string[]][] = [
  ["anyOf", { type: "object", properties: { x: { anyOf: [{ type: "string" }, { type: "integer" }] } } }, ["/properties/x"]],
  ["type array", { type: "object", properties: { x: { type: ["string", "integer"] } } }, ["/properties/x"]],
  ["enum of numbers", { type: "object", properties: { x: { type: "integer", enum: [1, 2] } } }, ["/properties/x"]],
  ["untyped enum", { type: "object", properties: { x: { enum: ["a", 1] } } }, ["/properties/x"]],
  ["const", { type: "object", properties: { x: { type: "string", const: "a" } } }, ["/properties/x/const"]],
  ["annotations", { type: "object", title: "T", properties: { x: { type: "string", examples: ["a"] } } }, ["/title", "/properties/x/examples"]],
  ["$schema", { $schema: "https://json-schema.org/draft/2020-12/schema", type: "object" }, ["/$schema"]],
  ["unknown format", { type: "object", properties: { x: { type: "string", format: "ipv4" } } }, ["/properties/x/format"]],
  ["string keyword on a number", { type: "object", properties: { x: { type: "number", minLength: 1 } } }, ["/properties/x/minLength"]],
  ["fractional minLength", { type: "object", properties: { x: { type: "string", minLength: 1.5 } } }, ["/properties/x/minLength"]],
  ["uniqueItems false", { type: "object", properties: { x: { type: "array", uniqueItems: false } } }, ["/properties/x/uniqueItems"]],
  ["empty required", { type: "object", properties: { x: { type: "string" } }, required: [] }, ["/required"]],
  ["required of an unknown property", { type: "object", properties: { x: { type: "string" } }, required: ["y"] }, ["/properties", "/required"]],
  ["tuple items", { type: "object", properties: { x: { type: "array", items: [{ type: "string" }] } } }, ["/properties/x/items"]],
  ["draft-07 definitions", { type: "object", definitions: { A: { type: "string" } }, properties: { a: { $ref: "#/definitions/A" } } }, ["/definitions", "/properties/a"]],
  ["unknown reference", { type: "object", properties: { a: { $ref: "#/$defs/Nope" } } }, ["/properties/a"]],
  ["boolean schema", { type: "object", properties: { a: true } }, ["/properties/a"]],
  ["additionalProperties schema", { type: "object", additionalProperties: { type: "string" } }, ["/additionalProperties"]],
];

describe("cards ⇄ JSON Schema", () => {
  it.each(ROUND_TRIPS)("round-trips exactly: %s", (_name, schema) => {
    const { doc, notes } = fromJsonSchema(schema);
    expect(notes).toEqual([]);
    expect(toJsonSchema(doc)).toEqual(schema);
  });

  it.each(LOSSLESS)("keeps and reports what has no card: %s", (_name, schema, pointers) => {
    const { doc, notes } = fromJsonSchema(schema);
    expect(toJsonSchema(doc)).toEqual(schema);
    expect(notes.map((n) => n.pointer).sort()).toEqual([...pointers].sort());
  });

  it("writes required in property order, and says so", () => {
    const schema = { type: "object", properties: { a: { type: "string" }, b: { type: "string" } }, required: ["b", "a"] };
    const { doc, notes } = fromJsonSchema(schema);
    expect(toJsonSchema(doc)).toEqual({ ...schema, required: ["a", "b"] });
    expect(notes).toEqual([{ pointer: "/required", message: "required is rewritten in property order" }]);
  });

  it.each([
    ["an array", []],
    ["a string", "x"],
    ["a non-object root", { type: "array" }],
    ["a root without type", { properties: {} }],
  ])("refuses %s as a response schema", (_name, schema) => {
    expect(() => fromJsonSchema(schema as Json)).toThrow(ImportError);
  });
});

function node(kind: Kind, fields: Partial<SchemaNode> = {}): SchemaNode {
  return { id: newId(), kind, ...fields };
}

function docWith(property: SchemaNode): SchemaDoc {
  return { root: node("object", { properties: [{ id: newId("p"), name: "x", required: false, node: property }] }), defs: [] };
}

describe("every constraint maps to its keyword", () => {
  const cases: [string, SchemaNode, JsonObject][] = [
    ["minLength", node("string", { minLength: 3 }), { type: "string", minLength: 3 }],
    ["maxLength", node("string", { maxLength: 9 }), { type: "string", maxLength: 9 }],
    ["pattern", node("string", { pattern: "^a" }), { type: "string", pattern: "^a" }],
    ...FORMATS.map((f): [string, SchemaNode, JsonObject] => [`format ${f}`, node("string", { format: f }), { type: "string", format: f }]),
    ["minimum", node("number", { minimum: -1 }), { type: "number", minimum: -1 }],
    ["maximum", node("integer", { maximum: 7 }), { type: "integer", maximum: 7 }],
    ["exclusiveMinimum", node("number", { exclusiveMinimum: 0 }), { type: "number", exclusiveMinimum: 0 }],
    ["exclusiveMaximum", node("number", { exclusiveMaximum: 1 }), { type: "number", exclusiveMaximum: 1 }],
    ["multipleOf", node("integer", { multipleOf: 5 }), { type: "integer", multipleOf: 5 }],
    ["items", node("array", { items: node("boolean") }), { type: "array", items: { type: "boolean" } }],
    ["minItems", node("array", { minItems: 1 }), { type: "array", minItems: 1 }],
    ["maxItems", node("array", { maxItems: 4 }), { type: "array", maxItems: 4 }],
    ["uniqueItems", node("array", { uniqueItems: true }), { type: "array", uniqueItems: true }],
    ["enum", node("enum", { values: ["a", "b"] }), { type: "string", enum: ["a", "b"] }],
    ["nullable", node("boolean", { nullable: true }), { type: ["boolean", "null"] }],
    ["description", node("string", { description: "d" }), { type: "string", description: "d" }],
    ["additionalProperties", node("object", { properties: [], additionalProperties: false }), { type: "object", properties: {}, additionalProperties: false }],
    ["constraints of another type are not written", node("number", { minLength: 3, pattern: "x", minItems: 2 }), { type: "number" }],
  ];
  it.each(cases)("%s", (_name, card, expected) => {
    const schema = toJsonSchema(docWith(card));
    expect((schema.properties as JsonObject).x).toEqual(expected);
  });

  it("required follows the toggles, in card order", () => {
    const doc: SchemaDoc = {
      root: node("object", {
        properties: [
          { id: "p1", name: "b", required: true, node: node("string") },
          { id: "p2", name: "a", required: false, node: node("string") },
          { id: "p3", name: "c", required: true, node: node("string") },
        ],
      }),
      defs: [],
    };
    expect(toJsonSchema(doc).required).toEqual(["b", "c"]);
  });
});

// --- randomized: any document the builder can make survives export → import → export ----------

const CARD_KINDS: Kind[] = ["string", "number", "integer", "boolean", "object", "array", "enum", "ref"];

function randomNode(r: Random, depth: number, defNames: string[]): SchemaNode {
  const kinds = CARD_KINDS.filter((k) => (k !== "ref" || defNames.length > 0) && (depth < 3 || (k !== "object" && k !== "array")));
  const kind = r.pick(kinds);
  const n: SchemaNode = { id: newId(), kind };
  if (r.bool(0.3)) n.description = r.word();
  if (NULLABLE_KINDS.has(kind) && r.bool(0.2)) n.nullable = true;
  switch (kind) {
    case "string":
      if (r.bool()) n.minLength = r.int(0, 5);
      if (r.bool()) n.maxLength = r.int(5, 50);
      if (r.bool(0.3)) n.pattern = `^${r.word()}`;
      if (r.bool(0.3)) n.format = r.pick(FORMATS);
      break;
    case "number":
    case "integer":
      if (r.bool()) n.minimum = r.int(-10, 0) + (kind === "number" && r.bool() ? 0.5 : 0);
      if (r.bool()) n.maximum = r.int(1, 100);
      if (r.bool(0.3)) n.exclusiveMinimum = r.int(-5, 0);
      if (r.bool(0.3)) n.exclusiveMaximum = r.int(100, 200);
      if (r.bool(0.3)) n.multipleOf = r.pick([1, 2, 0.25, 10]);
      break;
    case "array":
      if (r.bool(0.9)) n.items = randomNode(r, depth + 1, defNames);
      if (r.bool()) n.minItems = r.int(0, 2);
      if (r.bool()) n.maxItems = r.int(3, 9);
      if (r.bool(0.3)) n.uniqueItems = true;
      break;
    case "object":
      if (r.bool(0.9)) n.properties = randomProperties(r, depth + 1, defNames);
      if (r.bool(0.4)) n.additionalProperties = r.bool();
      break;
    case "enum": {
      const values = new Set<string>();
      const count = r.int(1, 4);
      while (values.size < count) values.add(r.word());
      n.values = [...values];
      break;
    }
    case "ref":
      n.ref = r.pick(defNames);
      break;
    default:
      break;
  }
  return n;
}

function randomProperties(r: Random, depth: number, defNames: string[]): PropertyCard[] {
  const names = new Set<string>();
  const count = r.int(0, 4);
  while (names.size < count) names.add(r.word());
  return [...names].map((name) => ({ id: newId("p"), name, required: r.bool(), node: randomNode(r, depth, defNames) }));
}

function randomDoc(r: Random): SchemaDoc {
  const defNames = r.bool(0.4) ? ["Thing", "a/b~c"].slice(0, r.int(1, 2)) : [];
  const defs: DefinitionCard[] = defNames.map((name) => ({ id: newId("d"), name, node: randomNode(r, 2, []) }));
  const root: SchemaNode = { id: newId(), kind: "object", properties: randomProperties(r, 1, defNames) };
  if (r.bool(0.3)) root.additionalProperties = false;
  if (r.bool(0.2)) root.description = r.word();
  return { root, defs };
}

/** The document without card ids (which are not part of the schema). */
function strip(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(strip);
  if (value && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (k !== "id") out[k] = strip(v);
    return out;
  }
  return value;
}

describe("randomized round trips", () => {
  it("export → import → export is the identity, and import gives the same cards back", () => {
    const r = new Random(20240611);
    for (let i = 0; i < 500; i += 1) {
      const doc = randomDoc(r);
      const schema = toJsonSchema(doc);
      const imported = fromJsonSchema(JSON.parse(JSON.stringify(schema)) as Json);
      expect(imported.notes, JSON.stringify(schema)).toEqual([]);
      expect(jsonEqual(toJsonSchema(imported.doc), schema), JSON.stringify(schema)).toBe(true);
      expect(strip(imported.doc)).toEqual(strip(doc));
    }
  });
});

describe("server pointers land on cards", () => {
  const { doc } = fromJsonSchema({
    type: "object",
    properties: {
      author: { type: "object", properties: { "na/me": { type: "string", minLength: 1 } } },
      items: { type: "array", items: { type: "object", properties: { qty: { type: "integer" } } } },
    },
    $defs: { Address: { type: "object", properties: { city: { type: "string" } } } },
  });
  const root = doc.root;
  const author = root.properties?.[0]?.node;
  const name = author?.properties?.[0]?.node;
  const items = root.properties?.[1]?.node;
  const qty = items?.items?.properties?.[0]?.node;
  const city = doc.defs[0]?.node.properties?.[0]?.node;

  it.each([
    ["", root.id, ""],
    ["/additionalProperties", root.id, "/additionalProperties"],
    ["/properties/author", author?.id, ""],
    ["/properties/author/properties/na~1me/minLength", name?.id, "/minLength"],
    ["/properties/items/items", items?.items?.id, ""],
    ["/properties/items/items/properties/qty/minimum", qty?.id, "/minimum"],
    ["/$defs/Address/properties/city", city?.id, ""],
    ["/properties/nope/type", root.id, "/properties/nope/type"],
  ])("%s", (pointer, id, rest) => {
    expect(cardForPointer(doc, pointer)).toEqual({ nodeId: id, rest });
  });
});

// --- randomized: any JSON Schema object survives import → export (nothing dropped) -------------

const KEYWORDS = [
  "type", "description", "enum", "const", "minLength", "maxLength", "pattern", "format", "minimum", "maximum",
  "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "items", "minItems", "maxItems", "uniqueItems",
  "properties", "additionalProperties", "anyOf", "title", "$ref", "default",
];

function randomValue(r: Random, depth: number): Json {
  switch (r.int(0, depth > 2 ? 4 : 6)) {
    case 0:
      return r.pick(["string", "number", "integer", "boolean", "object", "array", "null"]);
    case 1:
      return r.int(-3, 20) / r.pick([1, 1, 2]);
    case 2:
      return r.bool();
    case 3:
      return r.pick([null, "", "date", "email", "ipv4", "#/$defs/A", "#/$defs/B", "x"]);
    case 4:
      return [r.pick(["string", "a", 1, null]), r.pick(["null", "b", "integer"])];
    case 5:
      return randomSchema(r, depth + 1);
    default:
      return [randomSchema(r, depth + 1)];
  }
}

function randomSchema(r: Random, depth: number): JsonObject {
  const out: JsonObject = {};
  if (r.bool(0.8)) out.type = r.pick(["string", "number", "integer", "boolean", "object", "array"]);
  const count = r.int(0, 3);
  for (let i = 0; i < count; i += 1) {
    const key = r.pick(KEYWORDS);
    if (key === "properties" && depth < 3) {
      const properties: JsonObject = {};
      for (let j = r.int(0, 3); j > 0; j -= 1) properties[r.word()] = randomSchema(r, depth + 1);
      out.properties = properties;
      const names = Object.keys(properties);
      if (r.bool()) out.required = names.filter(() => r.bool());
    } else {
      out[key] = randomValue(r, depth);
    }
  }
  return out;
}

describe("randomized imports", () => {
  it("import → export gives back any schema whose required lists follow property order", () => {
    const r = new Random(7);
    for (let i = 0; i < 1000; i += 1) {
      const schema: JsonObject = { ...randomSchema(r, 0), type: "object" };
      if (r.bool(0.3)) schema.$defs = { A: randomSchema(r, 2), B: { type: "string" } };
      const { doc } = fromJsonSchema(schema);
      expect(toJsonSchema(doc), JSON.stringify(schema)).toEqual(schema);
    }
  });
});

describe("stored schemas", () => {
  it("get their required properties back in the saved order", () => {
    // what GET /v1/tasks/{id} can return: map order lost, the required list intact
    const stored = {
      type: "object",
      properties: {
        zeta: { type: "string" },
        opt: { type: "string" },
        alpha: { type: "object", properties: { b: { type: "string" }, a: { type: "string" } }, required: ["a", "b"] },
      },
      required: ["alpha", "zeta"],
    };
    const ordered = requiredFirst(stored) as JsonObject;
    expect(Object.keys(ordered.properties as JsonObject)).toEqual(["alpha", "zeta", "opt"]);
    expect(Object.keys(((ordered.properties as JsonObject).alpha as JsonObject).properties as JsonObject)).toEqual(["a", "b"]);
    expect(ordered).toEqual(stored);
    expect(fromJsonSchema(ordered).notes).toEqual([]);
  });
});
