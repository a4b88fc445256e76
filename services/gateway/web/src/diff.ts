/** A side-by-side line diff (longest common subsequence), for comparing versions. */

export type Side = { line: number; text: string } | null;

export interface DiffRow {
  kind: "same" | "removed" | "added" | "changed";
  left: Side;
  right: Side;
}

export function diffLines(before: string, after: string): DiffRow[] {
  const a = before.split("\n");
  const b = after.split("\n");
  const n = a.length;
  const m = b.length;
  // lcs[i][j]: length of the LCS of a[i:] and b[j:]
  const lcs: Uint32Array[] = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i -= 1) {
    const row = lcs[i] as Uint32Array;
    const below = lcs[i + 1] as Uint32Array;
    for (let j = m - 1; j >= 0; j -= 1) {
      row[j] = a[i] === b[j] ? (below[j + 1] as number) + 1 : Math.max(below[j] as number, row[j + 1] as number);
    }
  }
  const rows: DiffRow[] = [];
  let removed: { line: number; text: string }[] = [];
  let added: { line: number; text: string }[] = [];
  const flush = () => {
    const pairs = Math.max(removed.length, added.length);
    for (let k = 0; k < pairs; k += 1) {
      const left = removed[k] ?? null;
      const right = added[k] ?? null;
      rows.push({ kind: left && right ? "changed" : left ? "removed" : "added", left, right });
    }
    removed = [];
    added = [];
  };
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) {
      flush();
      rows.push({ kind: "same", left: { line: i + 1, text: a[i] ?? "" }, right: { line: j + 1, text: b[j] ?? "" } });
      i += 1;
      j += 1;
    } else if (j >= m || (i < n && (lcs[i + 1]?.[j] ?? 0) >= (lcs[i]?.[j + 1] ?? 0))) {
      removed.push({ line: i + 1, text: a[i] ?? "" });
      i += 1;
    } else {
      added.push({ line: j + 1, text: b[j] ?? "" });
      j += 1;
    }
  }
  flush();
  return rows;
}
