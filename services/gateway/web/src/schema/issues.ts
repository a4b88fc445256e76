/** The server's verdict (RFC 6901 pointers) and the builder's own checks, placed on cards. */

import type { SchemaIssue, SchemaVerdict } from "../api/types";
import { cardForPointer } from "./convert";
import { localProblems, type SchemaDoc } from "./model";
import type { CardIssues } from "./SchemaBuilder";

function label(rest: string, message: string): string {
  const where = rest.replace(/^\//, "").replace(/~1/g, "/").replace(/~0/g, "~");
  return where ? `${where}: ${message}` : message;
}

export function issuesByCard(
  doc: SchemaDoc,
  verdict: Pick<SchemaVerdict, "errors" | "warnings"> | null,
  extraErrors: SchemaIssue[] = [],
): Map<string, CardIssues> {
  const out = new Map<string, CardIssues>();
  const at = (id: string) => {
    let issues = out.get(id);
    if (!issues) {
      issues = { errors: [], warnings: [] };
      out.set(id, issues);
    }
    return issues;
  };
  for (const [id, messages] of localProblems(doc)) at(id).errors.push(...messages);
  for (const issue of [...(verdict?.errors ?? []), ...extraErrors]) {
    const target = cardForPointer(doc, issue.pointer);
    const message = label(target.rest, issue.message);
    const list = at(target.nodeId).errors;
    if (!list.includes(message)) list.push(message);
  }
  for (const issue of verdict?.warnings ?? []) {
    const target = cardForPointer(doc, issue.pointer);
    const providers = issue.provider_types.length ? ` (${issue.provider_types.join(", ")})` : "";
    at(target.nodeId).warnings.push(label(target.rest, issue.message) + providers);
  }
  return out;
}
