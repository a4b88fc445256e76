import { describe, expect, it } from "vitest";
import type { JsonObject } from "../json";
import { breakingChanges } from "./breaking";

const base: JsonObject = {
  type: "object",
  properties: {
    title: { type: "string", minLength: 1, maxLength: 100 },
    score: { type: "number", minimum: 0, maximum: 10 },
    sentiment: { type: "string", enum: ["positive", "negative", "neutral"] },
    tags: { type: "array", items: { type: "string" }, maxItems: 5 },
    author: { type: "object", properties: { name: { type: "string" } }, required: ["name"] },
  },
  required: ["title"],
};

function change(edit: (schema: JsonObject) => void): JsonObject {
  const copy = JSON.parse(JSON.stringify(base)) as JsonObject;
  edit(copy);
  return copy;
}

const props = (s: JsonObject) => s.properties as Record<string, JsonObject>;

describe("breaking changes", () => {
  it.each<[string, (s: JsonObject) => void, string[]]>([
    ["a property removed", (s) => delete props(s).score, ['/properties/score: property "score" removed']],
    ["a nested property removed", (s) => delete (props(s).author?.properties as JsonObject).name, ['/properties/author/properties/name: property "name" removed']],
    ["a property newly required", (s) => (s.required = ["title", "score"]), ['/properties/score: property "score" is newly required']],
    ["a new required property", (s) => {
      props(s).extra = { type: "string" };
      s.required = ["title", "extra"];
    }, ['/properties/extra: property "extra" is newly required']],
    ["number narrowed to integer", (s) => (props(s).score!.type = "integer"), ["/properties/score/type: type narrowed from number to integer"]],
    ["type changed", (s) => (props(s).title!.type = "number"), ["/properties/title/type: type changed from string to number"]],
    ["enum values removed", (s) => (props(s).sentiment!.enum = ["positive", "negative"]), ['/properties/sentiment/enum: enum value removed: "neutral"']],
    ["minLength raised", (s) => (props(s).title!.minLength = 3), ["/properties/title/minLength: minLength raised from 1 to 3"]],
    ["maxLength lowered", (s) => (props(s).title!.maxLength = 50), ["/properties/title/maxLength: maxLength lowered from 100 to 50"]],
    ["minimum added", (s) => (props(s).tags!.minItems = 1), ["/properties/tags/minItems: minItems 1 added"]],
    ["maximum lowered", (s) => (props(s).score!.maximum = 5), ["/properties/score/maximum: maximum lowered from 10 to 5"]],
    ["exclusiveMinimum added", (s) => (props(s).score!.exclusiveMinimum = 0), ["/properties/score/exclusiveMinimum: exclusiveMinimum 0 added"]],
    ["pattern added", (s) => (props(s).title!.pattern = "^A"), ['/properties/title/pattern: pattern "^A" added']],
    ["format added", (s) => (props(s).title!.format = "email"), ['/properties/title/format: format "email" added']],
    ["multipleOf added", (s) => (props(s).score!.multipleOf = 0.5), ["/properties/score/multipleOf: multipleOf 0.5 added"]],
    ["uniqueItems required", (s) => (props(s).tags!.uniqueItems = true), ["/properties/tags/uniqueItems: items must now be unique"]],
    ["items narrowed", (s) => (props(s).tags!.items = { type: "string", maxLength: 3 }), ["/properties/tags/items/maxLength: maxLength 3 added"]],
    ["extra properties forbidden", (s) => (s.additionalProperties = false), ["/additionalProperties: other properties are no longer allowed"]],
  ])("%s", (_name, edit, expected) => {
    const found = breakingChanges(base, change(edit)).map((c) => `${c.pointer}: ${c.message}`);
    expect(found).toEqual(expected);
  });

  it.each<[string, (s: JsonObject) => void]>([
    ["nothing changed", () => undefined],
    ["a property added (optional)", (s) => (props(s).extra = { type: "string" })],
    ["a requirement dropped", (s) => (s.required = [])],
    ["integer widened to number", (s) => (props(s).score!.type = "number")],
    ["enum values added", (s) => (props(s).sentiment!.enum = ["positive", "negative", "neutral", "mixed"])],
    ["constraints loosened", (s) => {
      props(s).title!.minLength = 0;
      props(s).title!.maxLength = 500;
      delete props(s).score!.maximum;
    }],
    ["a description changed", (s) => (props(s).title!.description = "the headline")],
    ["multipleOf refined to a divisor", (s) => {
      props(s).score!.multipleOf = 1;
    }],
  ])("not breaking: %s", (_name, edit) => {
    const before = change((s) => (props(s).score!.multipleOf = 2));
    const after = change((s) => {
      props(s).score!.multipleOf = 2;
      edit(s);
    });
    expect(breakingChanges(before, after)).toEqual([]);
  });

  it("a nullable type losing null is a narrowing", () => {
    const before = { type: "object", properties: { a: { type: ["string", "null"] } } };
    const after = { type: "object", properties: { a: { type: "string" } } };
    expect(breakingChanges(before, after).map((c) => c.message)).toEqual(["type changed from string or null to string"]);
  });

  it("definitions are compared by name", () => {
    const before = { type: "object", $defs: { A: { type: "string" }, B: { type: "integer" } } };
    const after = { type: "object", $defs: { A: { type: "string", maxLength: 2 } } };
    expect(breakingChanges(before, after)).toEqual([
      { pointer: "/$defs/A/maxLength", message: "maxLength 2 added" },
      { pointer: "/$defs/B", message: 'definition "B" removed' },
    ]);
  });

  it("what it cannot compare precisely it asks to review", () => {
    const before = { type: "object", properties: { a: { anyOf: [{ type: "string" }, { type: "integer" }] } } };
    const after = { type: "object", properties: { a: { anyOf: [{ type: "string" }] } } };
    expect(breakingChanges(before, after).map((c) => c.message)).toEqual(["anyOf changed; review"]);
  });
});
