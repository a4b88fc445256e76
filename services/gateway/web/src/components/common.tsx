/** Small display pieces shared by the pages. */

import { useState, type ReactNode } from "react";
import { isObject, pretty, type Json } from "../json";

export function StatusBadge({ status }: { status: string }) {
  const tone =
    status === "valid" || status === "succeeded"
      ? "ok"
      : status === "pending" || status === "queued" || status === "running" || status === "unknown"
        ? "wait"
        : "bad";
  return <span className={`badge badge-${tone}`}>{status.replace(/_/g, " ")}</span>;
}

export function When({ time }: { time: string | undefined }) {
  if (!time) return <span className="muted">—</span>;
  const date = new Date(time);
  return (
    <time dateTime={time} title={date.toLocaleString()}>
      {relative(date)}
    </time>
  );
}

function relative(date: Date): string {
  const seconds = Math.round((Date.now() - date.getTime()) / 1000);
  if (seconds < 5) return "just now";
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return date.toLocaleDateString();
}

export function JsonBlock({ value, label }: { value: unknown; label: string }) {
  return (
    <pre className="json" aria-label={label} tabIndex={0}>
      {pretty(value)}
    </pre>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <p className="empty">{children}</p>;
}

/** A button that asks "sure?" in place instead of a modal dialog. */
export function ConfirmButton({
  label,
  confirmLabel,
  onConfirm,
  className = "danger",
}: {
  label: string;
  confirmLabel: string;
  onConfirm: () => void;
  className?: string;
}) {
  const [asking, setAsking] = useState(false);
  if (!asking) {
    return (
      <button type="button" className={className} onClick={() => setAsking(true)}>
        {label}
      </button>
    );
  }
  return (
    <span className="confirm" role="group" aria-label={confirmLabel}>
      <span>{confirmLabel}</span>
      <button
        type="button"
        className="danger"
        autoFocus
        onClick={() => {
          setAsking(false);
          onConfirm();
        }}
      >
        Yes
      </button>
      <button type="button" onClick={() => setAsking(false)}>
        No
      </button>
    </span>
  );
}

/** A structured answer as readable fields: objects as labelled rows, arrays as numbered items. */
export function AnswerView({ value }: { value: Json | undefined }) {
  if (value === undefined) return <span className="muted">—</span>;
  if (Array.isArray(value)) {
    if (value.length === 0) return <span className="muted">(empty list)</span>;
    return (
      <ol className="answer-list">
        {value.map((item, i) => (
          <li key={i}>
            <AnswerView value={item} />
          </li>
        ))}
      </ol>
    );
  }
  if (isObject(value)) {
    const entries = Object.entries(value);
    if (entries.length === 0) return <span className="muted">(no fields)</span>;
    return (
      <dl className="answer-object">
        {entries.map(([key, item]) => (
          <div className="answer-row" key={key}>
            <dt>{key}</dt>
            <dd>
              <AnswerView value={item} />
            </dd>
          </div>
        ))}
      </dl>
    );
  }
  if (value === null) return <span className="muted">null</span>;
  if (typeof value === "boolean") return <span className="answer-bool">{value ? "yes" : "no"}</span>;
  if (typeof value === "number") return <span className="answer-number">{value}</span>;
  return <span className="answer-string">{value}</span>;
}
