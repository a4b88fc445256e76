/** Sorting and small helpers the pages share. */

import type { Run } from "../api/types";

export function byName<T extends { name: string }>(items: T[]): T[] {
  return [...items].sort((a, b) => a.name.localeCompare(b.name));
}

export function newestRuns(runs: Run[]): Run[] {
  return [...runs].sort((a, b) => b.create_time.localeCompare(a.create_time) || b.id.localeCompare(a.id));
}

/** "1 field", "2 fields". */
export function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}
