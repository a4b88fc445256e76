/** The REST shapes (services/gateway/schemas.py), as the console uses them. */

import type { JsonObject } from "../json";

export const PROVIDER_TYPES = [
  "openai",
  "anthropic",
  "google",
  "groq",
  "mistral",
  "ollama",
  "openai_compatible",
  "test",
] as const;
export type ProviderType = (typeof PROVIDER_TYPES)[number];

/** Types without a well-known endpoint: base_url is required. */
export const NEEDS_BASE_URL: ReadonlySet<string> = new Set(["openai_compatible", "ollama"]);
/** Hosted APIs: an API key is required. */
export const NEEDS_API_KEY: ReadonlySet<string> = new Set(["openai", "anthropic", "google", "groq", "mistral"]);

export type ValidationStatus =
  | "unknown"
  | "pending"
  | "valid"
  | "auth_failed"
  | "unreachable"
  | "rate_limited"
  | "timeout"
  | "unexpected_response";

export interface Me {
  key_id: string;
  project: string;
  role: "admin" | "viewer" | "service";
}

export interface ProviderValidation {
  status: ValidationStatus;
  detail: string;
  checked_time?: string;
  models: string[];
}

export interface Provider {
  id: string;
  project: string;
  name: string;
  type: ProviderType;
  base_url: string;
  api_key_hint: string;
  config: JsonObject;
  validation: ProviderValidation;
  create_time: string;
  update_time: string;
  etag: string;
}

export interface ModelSettings {
  temperature?: number;
  max_tokens?: number;
  top_p?: number;
  timeout_s?: number;
  seed?: number;
  presence_penalty?: number;
  frequency_penalty?: number;
  stop_sequences?: string[];
}

export interface Agent {
  id: string;
  project: string;
  name: string;
  description: string;
  provider_id: string;
  model: string;
  system_prompt: string;
  model_settings: ModelSettings;
  output_retries: number;
  labels: Record<string, string>;
  version: number;
  create_time: string;
  update_time: string;
  etag: string;
}

export interface Task {
  id: string;
  project: string;
  name: string;
  description: string;
  instructions: string;
  prompt_template: string;
  response_schema: JsonObject;
  variables: string[];
  version: number;
  create_time: string;
  update_time: string;
  etag: string;
}

export interface SchemaIssue {
  pointer: string;
  message: string;
  provider_types: string[];
}

export interface SchemaVerdict {
  valid: boolean;
  errors: SchemaIssue[];
  warnings: SchemaIssue[];
  schema_hash: string;
}

export type RunStatus = "queued" | "running" | "succeeded" | "failed";
export const RUN_STATUSES: RunStatus[] = ["queued", "running", "succeeded", "failed"];

export interface Run {
  id: string;
  project: string;
  agent_id: string;
  agent_version: number;
  task_id: string;
  task_version: number;
  variables: JsonObject;
  prompt: string;
  status: RunStatus;
  output?: JsonObject | null;
  error?: { code: string; message: string } | null;
  usage: { requests: number; input_tokens: number; output_tokens: number };
  attempts: number;
  latency_ms: number;
  create_time: string;
  start_time?: string;
  end_time?: string;
}

export interface ErrorDetail {
  type: "error_info" | "field_violation" | "retry_info";
  reason?: string;
  domain?: string;
  metadata?: Record<string, string>;
  field?: string;
  description?: string;
  retry_after_s?: number;
}

export type Topic = "providers" | "agents" | "tasks" | "runs";
export const TOPICS: Topic[] = ["providers", "agents", "tasks", "runs"];

export interface ResourceOf {
  providers: Provider;
  agents: Agent;
  tasks: Task;
  runs: Run;
}

/** `{"type": "event", "topic", "event"}` from `GET /v1/ws`. */
export interface LiveEvent {
  id: string;
  type: string;
  subject: string;
  time?: string;
  data: JsonObject;
}
