/** A resource's versions, and a side-by-side diff of any two of them. */

import { useEffect, useRef, useState } from "react";
import { diffLines } from "../diff";
import { pretty, sortKeys, type Json } from "../json";
import { When } from "./common";
import { SelectField } from "./forms";

interface Versioned {
  version: number;
  update_time: string;
}

export function VersionHistory<T extends Versioned>({
  load,
  current,
  view,
  summary,
}: {
  /** Every version (any order). */
  load: () => Promise<T[]>;
  /** The current version number (reloads when it changes). */
  current: number;
  /** What of a version is compared. */
  view: (item: T) => Json;
  /** A one-line summary of a version. */
  summary: (item: T) => string;
}) {
  const [versions, setVersions] = useState<T[] | null>(null);
  const [error, setError] = useState("");
  const [left, setLeft] = useState(0);
  const [right, setRight] = useState(0);
  // `load` is a new function every render; the version number is what matters.
  const loader = useRef(load);
  loader.current = load;
  useEffect(() => {
    let cancelled = false;
    loader
      .current()
      .then((items) => {
        if (cancelled) return;
        const sorted = [...items].sort((a, b) => b.version - a.version);
        setVersions(sorted);
        setRight(sorted[0]?.version ?? 0);
        setLeft(sorted[1]?.version ?? sorted[0]?.version ?? 0);
      })
      .catch((e: unknown) => !cancelled && setError(e instanceof Error ? e.message : String(e)));
    return () => {
      cancelled = true;
    };
  }, [current]);
  if (error) return <p className="field-error">Could not load the versions: {error}</p>;
  if (!versions) return <p className="muted">Loading versions…</p>;
  const a = versions.find((v) => v.version === left);
  const b = versions.find((v) => v.version === right);
  const options = versions.map((v) => ({ value: String(v.version), label: `v${v.version}` }));
  return (
    <div className="versions">
      <table className="table">
        <caption className="sr-only">Versions</caption>
        <thead>
          <tr>
            <th scope="col">Version</th>
            <th scope="col">Saved</th>
            <th scope="col">Summary</th>
          </tr>
        </thead>
        <tbody>
          {versions.map((v) => (
            <tr key={v.version} className={v.version === current ? "current" : undefined}>
              <td>
                v{v.version}
                {v.version === current && <span className="muted"> (current)</span>}
              </td>
              <td>
                <When time={v.update_time} />
              </td>
              <td>{summary(v)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {versions.length > 1 && (
        <>
          <div className="inline-fields">
            <SelectField label="Compare" value={String(left)} onChange={(v) => setLeft(Number(v))} options={options} />
            <SelectField label="with" value={String(right)} onChange={(v) => setRight(Number(v))} options={options} />
          </div>
          {a && b && <DiffView before={view(a)} after={view(b)} leftTitle={`v${a.version}`} rightTitle={`v${b.version}`} />}
        </>
      )}
    </div>
  );
}

export function DiffView({
  before,
  after,
  leftTitle,
  rightTitle,
}: {
  before: Json;
  after: Json;
  leftTitle: string;
  rightTitle: string;
}) {
  const rows = diffLines(pretty(sortKeys(before)), pretty(sortKeys(after)));
  const changed = rows.filter((r) => r.kind !== "same").length;
  return (
    <figure className="diff" aria-label={`Differences between ${leftTitle} and ${rightTitle}`}>
      <figcaption>
        {changed === 0 ? "No differences." : `${changed} line${changed === 1 ? "" : "s"} differ.`}
      </figcaption>
      <table>
        <colgroup>
          <col className="ln-col" />
          <col />
          <col className="ln-col" />
          <col />
        </colgroup>
        <thead>
          <tr>
            <th scope="col" colSpan={2}>
              {leftTitle}
            </th>
            <th scope="col" colSpan={2}>
              {rightTitle}
            </th>
          </tr>
        </thead>
        <tbody>
          {rows.map((row, i) => (
            <tr key={i} className={`diff-${row.kind}`}>
              <td className="ln">{row.left?.line ?? ""}</td>
              <td className={row.left && row.kind !== "same" ? "del" : undefined}>
                <code>{row.left?.text ?? ""}</code>
              </td>
              <td className="ln">{row.right?.line ?? ""}</td>
              <td className={row.right && row.kind !== "same" ? "ins" : undefined}>
                <code>{row.right?.text ?? ""}</code>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </figure>
  );
}
