import { describe, expect, it } from "vitest";
import { diffLines } from "./diff";

describe("side-by-side diff", () => {
  it("aligns equal lines and pairs changes", () => {
    const rows = diffLines("a\nb\nc\nd", "a\nB\nc\nd\ne");
    expect(rows.map((r) => [r.kind, r.left?.text ?? null, r.right?.text ?? null])).toEqual([
      ["same", "a", "a"],
      ["changed", "b", "B"],
      ["same", "c", "c"],
      ["same", "d", "d"],
      ["added", null, "e"],
    ]);
  });

  it("reports removals with their line numbers", () => {
    const rows = diffLines("x\ny\nz", "x\nz");
    expect(rows.filter((r) => r.kind !== "same")).toEqual([{ kind: "removed", left: { line: 2, text: "y" }, right: null }]);
  });

  it("identical texts have no differences", () => {
    expect(diffLines("same\ntext", "same\ntext").every((r) => r.kind === "same")).toBe(true);
  });
});
