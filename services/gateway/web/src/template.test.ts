import { describe, expect, it } from "vitest";
import { scanTemplate } from "./template";

describe("template variables", () => {
  it.each<[string, string[]]>([
    ["", []],
    ["no variables here", []],
    ["Summarize {text}", ["text"]],
    ["{a} and {b} then {a} again", ["a", "b"]],
    ["{_private} {x1} {CamelCase}", ["_private", "x1", "CamelCase"]],
    ["literal {{braces}} are not variables", []],
    ["{{{name}}}", ["name"]],
    ["JSON like {{\"k\": {value}}}", ["value"]],
    ["}}{{", []],
  ])("%j → %j", (template, variables) => {
    const scan = scanTemplate(template);
    expect(scan.problems).toEqual([]);
    expect(scan.variables).toEqual(variables);
  });

  it.each<[string, string]>([
    ["an { unmatched", "unmatched '{' at character 3; write '{{' for a literal brace"],
    ["closing } alone", "unmatched '}' at character 8; write '}}' for a literal brace"],
    ["{1abc}", "'{1abc}' at character 0 is not a variable name (letters, digits and '_', not starting with a digit)"],
    ["{two words}", "'{two words}' at character 0 is not a variable name (letters, digits and '_', not starting with a digit)"],
    ["{}", "'{}' at character 0 is not a variable name (letters, digits and '_', not starting with a digit)"],
    [`{${"a".repeat(65)}}`, `'{${"a".repeat(65)}}' at character 0 is not a variable name (letters, digits and '_', not starting with a digit)`],
  ])("%j is refused like the server does", (template, message) => {
    expect(scanTemplate(template).problems.map((p) => p.message)).toEqual([message]);
  });

  it("keeps finding variables after a problem", () => {
    expect(scanTemplate("{ok} { {also_ok}").variables).toEqual(["ok", "also_ok"]);
  });
});
