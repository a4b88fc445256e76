import { describe, expect, it } from "vitest";
import { backoffMs } from "./socket";

describe("reconnect backoff", () => {
  it("doubles from half a second up to 15 s, with jitter between half and all of it", () => {
    expect([0, 1, 2, 3, 4, 5, 10].map((n) => backoffMs(n, () => 1))).toEqual([500, 1000, 2000, 4000, 8000, 15000, 15000]);
    expect(backoffMs(3, () => 0)).toBe(2000);
  });
});
