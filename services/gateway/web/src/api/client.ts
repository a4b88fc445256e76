/** The REST client: `Authorization: Bearer <key>`, JSON in and out, errors as `ApiError`. */

import type { JsonObject } from "../json";
import type { Agent, ErrorDetail, Me, Provider, Run, SchemaVerdict, Task } from "./types";

/** An error answer of the API (`{"error": {code, message, details}}`), or no answer at all. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly details: ErrorDetail[];
  /** Seconds to wait (429), from `Retry-After` or the details. */
  readonly retryAfterS: number | undefined;

  constructor(status: number, code: string, message: string, details: ErrorDetail[] = [], retryAfterS?: number) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
    this.retryAfterS = retryAfterS;
  }

  /** Field violations: `field` (relative to the request body) → descriptions. */
  get fields(): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    for (const detail of this.details) {
      if (detail.type === "field_violation" && detail.field) {
        (out[detail.field] ??= []).push(detail.description ?? "invalid");
      }
    }
    return out;
  }

  get reason(): string | undefined {
    return this.details.find((d) => d.type === "error_info")?.reason;
  }

  get metadata(): Record<string, string> {
    return this.details.find((d) => d.type === "error_info")?.metadata ?? {};
  }
}

export interface Page<T> {
  items: T[];
  nextPageToken: string;
}

type Query = Record<string, string | number | undefined>;

function withQuery(path: string, query: Query = {}): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== "") params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

export class Api {
  constructor(
    readonly key: string,
    private readonly base = "",
  ) {}

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { Authorization: `Bearer ${this.key}`, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response: Response;
    try {
      response = await fetch(this.base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new ApiError(0, "UNAVAILABLE", "cannot reach the gateway; check your connection and retry");
    }
    const text = await response.text();
    let parsed: unknown = undefined;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
    }
    if (!response.ok) {
      const error = (parsed as { error?: { code?: string; message?: string; details?: ErrorDetail[] } } | undefined)
        ?.error;
      const details = Array.isArray(error?.details) ? error.details : [];
      const header = Number(response.headers.get("Retry-After"));
      const fromDetails = details.find((d) => d.type === "retry_info")?.retry_after_s;
      const retryAfter = Number.isFinite(header) && header > 0 ? header : fromDetails;
      throw new ApiError(
        response.status,
        error?.code ?? `HTTP_${response.status}`,
        error?.message ?? `the gateway answered ${response.status} ${response.statusText}`.trim(),
        details,
        retryAfter,
      );
    }
    return parsed as T;
  }

  private async page<T>(path: string, collection: string, query: Query): Promise<Page<T>> {
    const body = await this.request<Record<string, unknown>>("GET", withQuery(path, query));
    return { items: (body[collection] as T[] | undefined) ?? [], nextPageToken: String(body.next_page_token ?? "") };
  }

  /** Every item of a collection (following `next_page_token`), up to `limit`. */
  async all<T>(path: string, collection: string, query: Query = {}, limit = 2000): Promise<T[]> {
    const items: T[] = [];
    let token = "";
    do {
      const page = await this.page<T>(path, collection, { ...query, page_size: 200, page_token: token });
      items.push(...page.items);
      token = page.nextPageToken;
    } while (token && items.length < limit);
    return items;
  }

  me = () => this.request<Me>("GET", "/v1/me");

  providers = () => this.all<Provider>("/v1/providers", "providers");
  createProvider = (body: JsonObject) => this.request<Provider>("POST", "/v1/providers", body);
  updateProvider = (id: string, body: JsonObject) => this.request<Provider>("PATCH", `/v1/providers/${enc(id)}`, body);
  deleteProvider = (id: string, force = false) =>
    this.request<Provider>("DELETE", withQuery(`/v1/providers/${enc(id)}`, { force: force ? "true" : undefined }));
  validateProvider = (id: string) => this.request<Provider>("POST", `/v1/providers/${enc(id)}:validate`);

  agents = () => this.all<Agent>("/v1/agents", "agents");
  agent = (id: string) => this.request<Agent>("GET", `/v1/agents/${enc(id)}`);
  agentVersions = (id: string) => this.all<Agent>(`/v1/agents/${enc(id)}/versions`, "agents", {}, 500);
  createAgent = (body: JsonObject) => this.request<Agent>("POST", "/v1/agents", body);
  updateAgent = (id: string, body: JsonObject) => this.request<Agent>("PATCH", `/v1/agents/${enc(id)}`, body);
  deleteAgent = (id: string) => this.request<Agent>("DELETE", `/v1/agents/${enc(id)}`);

  tasks = () => this.all<Task>("/v1/tasks", "tasks");
  task = (id: string) => this.request<Task>("GET", `/v1/tasks/${enc(id)}`);
  taskVersions = (id: string) => this.all<Task>(`/v1/tasks/${enc(id)}/versions`, "tasks", {}, 500);
  createTask = (body: JsonObject) => this.request<Task>("POST", "/v1/tasks", body);
  updateTask = (id: string, body: JsonObject) => this.request<Task>("PATCH", `/v1/tasks/${enc(id)}`, body);
  deleteTask = (id: string) => this.request<Task>("DELETE", `/v1/tasks/${enc(id)}`);
  checkSchema = (schema: JsonObject) =>
    this.request<SchemaVerdict>("POST", "/v1/tasks:check-schema", { response_schema: schema });

  runs = (filter: { agent_id?: string; task_id?: string; status?: string }, pageSize = 100) =>
    this.page<Run>("/v1/runs", "runs", { ...filter, page_size: pageSize });
  run = (id: string) => this.request<Run>("GET", `/v1/runs/${enc(id)}`);
  createRun = (body: JsonObject) => this.request<Run>("POST", "/v1/runs", body);
}

function enc(id: string): string {
  return encodeURIComponent(id);
}
