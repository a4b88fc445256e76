/** Sorting and small helpers the pages share. */

import type { Run } from "../api/types";

export function byName<T extends { name: string }>(items: T[]): T[] {
  return [...items].sort((a, b) => a.name.localeCompare(b.name));
}

export function newestRuns(runs: Run[]): Run[] {
  return [...runs].sort((a, b) => b.create_time.localeCompare(a.create_time) || b.id.localeCompare(a.id));
}

/** `create_time` etc. are RFC 3339 strings; this compares them as times. */
export function newer(a: string, b: string): boolean {
  return new Date(a).getTime() > new Date(b).getTime();
}
