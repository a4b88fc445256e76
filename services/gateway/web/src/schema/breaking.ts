/**
 * Breaking changes between two versions of a response schema.
 *
 * Consumers of a task read its answers and may keep old ones: a change breaks them
 * when a property they read disappears, or when an answer valid under the old schema
 * would not be valid under the new one (a property newly required, a type narrowed,
 * enum values removed, a constraint tightened or added). Loosening is never reported.
 * Works on any two JSON Schemas, not only on what the cards can express; what it cannot
 * compare precisely (`anyOf`, `oneOf`, changed `$ref`s, custom keywords) it reports as
 * a change to review.
 */

import { escapePointerToken, isObject, jsonEqual, type Json, type JsonObject } from "../json";

export interface BreakingChange {
  /** Where, as an RFC 6901 pointer into the new schema. */
  pointer: string;
  message: string;
}

const LOWER_BOUNDS = ["minLength", "minItems", "minProperties", "minimum", "exclusiveMinimum"] as const;
const UPPER_BOUNDS = ["maxLength", "maxItems", "maxProperties", "maximum", "exclusiveMaximum"] as const;
const COMPOSITIONS = ["anyOf", "oneOf", "allOf", "not", "const", "if", "then", "else"] as const;

export function breakingChanges(before: Json, after: Json): BreakingChange[] {
  const out: BreakingChange[] = [];
  compare(before, after, "", out);
  if (isObject(before) && isObject(after)) {
    const oldDefs = isObject(before.$defs) ? before.$defs : {};
    const newDefs = isObject(after.$defs) ? after.$defs : {};
    for (const [name, schema] of Object.entries(oldDefs)) {
      const pointer = `/$defs/${escapePointerToken(name)}`;
      if (!(name in newDefs)) out.push({ pointer, message: `definition "${name}" removed` });
      else compare(schema, newDefs[name] as Json, pointer, out);
    }
  }
  return out;
}

function typesOf(schema: JsonObject): string[] | undefined {
  const type = schema.type;
  if (typeof type === "string") return [type];
  if (Array.isArray(type)) return type.filter((t): t is string => typeof t === "string");
  return undefined;
}

function describeTypes(types: string[]): string {
  return types.length === 1 ? (types[0] ?? "") : types.join(" or ");
}

function compare(before: Json, after: Json, pointer: string, out: BreakingChange[]): void {
  if (jsonEqual(before, after)) return;
  if (!isObject(before) || !isObject(after)) {
    if (after === true || (isObject(after) && Object.keys(after).length === 0)) return; // accepts anything
    out.push({ pointer, message: "schema replaced; review" });
    return;
  }
  const at = (keyword: string) => `${pointer}/${escapePointerToken(keyword)}`;

  const oldTypes = typesOf(before);
  const newTypes = typesOf(after);
  if (newTypes) {
    if (!oldTypes) {
      out.push({ pointer: at("type"), message: `type restricted to ${describeTypes(newTypes)}` });
    } else {
      const lost = oldTypes.filter(
        (t) => !newTypes.includes(t) && !(t === "integer" && newTypes.includes("number")),
      );
      if (lost.length > 0) {
        const narrowed = lost.every((t) => t === "number") && newTypes.includes("integer");
        out.push({
          pointer: at("type"),
          message: narrowed
            ? `type narrowed from ${describeTypes(oldTypes)} to ${describeTypes(newTypes)}`
            : `type changed from ${describeTypes(oldTypes)} to ${describeTypes(newTypes)}`,
        });
        if (!narrowed) return; // nothing below compares across unrelated types
      }
    }
  }

  if (Array.isArray(after.enum)) {
    if (!Array.isArray(before.enum)) {
      out.push({ pointer: at("enum"), message: "values restricted to an enum" });
    } else {
      const newValues = after.enum;
      const removed = before.enum.filter((v) => !newValues.some((w) => jsonEqual(v, w)));
      if (removed.length > 0) {
        out.push({
          pointer: at("enum"),
          message: `enum value${removed.length > 1 ? "s" : ""} removed: ${removed.map((v) => JSON.stringify(v)).join(", ")}`,
        });
      }
    }
  }

  for (const key of LOWER_BOUNDS) {
    const was = before[key];
    const now = after[key];
    if (typeof now !== "number") continue;
    if (typeof was !== "number") out.push({ pointer: at(key), message: `${key} ${now} added` });
    else if (now > was) out.push({ pointer: at(key), message: `${key} raised from ${was} to ${now}` });
  }
  for (const key of UPPER_BOUNDS) {
    const was = before[key];
    const now = after[key];
    if (typeof now !== "number") continue;
    if (typeof was !== "number") out.push({ pointer: at(key), message: `${key} ${now} added` });
    else if (now < was) out.push({ pointer: at(key), message: `${key} lowered from ${was} to ${now}` });
  }
  if (typeof after.multipleOf === "number") {
    const was = before.multipleOf;
    const now = after.multipleOf;
    if (typeof was !== "number") out.push({ pointer: at("multipleOf"), message: `multipleOf ${now} added` });
    else if (!isMultiple(was, now)) {
      out.push({ pointer: at("multipleOf"), message: `multipleOf changed from ${was} to ${now}` });
    }
  }
  for (const key of ["pattern", "format"] as const) {
    if (after[key] === undefined || jsonEqual(before[key], after[key])) continue;
    out.push({
      pointer: at(key),
      message: before[key] === undefined ? `${key} ${JSON.stringify(after[key])} added` : `${key} changed`,
    });
  }
  if (after.uniqueItems === true && before.uniqueItems !== true) {
    out.push({ pointer: at("uniqueItems"), message: "items must now be unique" });
  }
  if (after.additionalProperties === false && before.additionalProperties !== false) {
    out.push({ pointer: at("additionalProperties"), message: "other properties are no longer allowed" });
  }
  if (typeof before.$ref === "string" || typeof after.$ref === "string") {
    if (before.$ref !== after.$ref) out.push({ pointer: at("$ref"), message: "reference changed; review" });
  }
  for (const key of COMPOSITIONS) {
    if (after[key] !== undefined && !jsonEqual(before[key], after[key])) {
      out.push({ pointer: at(key), message: `${key} changed; review` });
    }
  }

  const oldRequired = new Set(stringList(before.required));
  for (const name of stringList(after.required)) {
    if (!oldRequired.has(name)) {
      out.push({
        pointer: `${pointer}/properties/${escapePointerToken(name)}`,
        message: `property "${name}" is newly required`,
      });
    }
  }
  const oldProperties = isObject(before.properties) ? before.properties : {};
  const newProperties = isObject(after.properties) ? after.properties : {};
  for (const [name, schema] of Object.entries(oldProperties)) {
    const child = `${pointer}/properties/${escapePointerToken(name)}`;
    if (!(name in newProperties)) out.push({ pointer: child, message: `property "${name}" removed` });
    else compare(schema, newProperties[name] as Json, child, out);
  }
  if (after.items !== undefined) {
    compare(before.items ?? true, after.items, at("items"), out);
  }
}

function stringList(value: Json | undefined): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];
}

/** Is every multiple of `was` a multiple of `now`? (Then nothing valid became invalid.) */
function isMultiple(was: number, now: number): boolean {
  if (now === 0) return false;
  const ratio = was / now;
  return Math.abs(ratio - Math.round(ratio)) < 1e-9;
}
