/** Agents: list, create/edit (provider from a list, model from what validation found), versions. */

import { useEffect, useMemo, useState, type FormEvent } from "react";
import { ApiError } from "../api/client";
import type { Agent, ModelSettings } from "../api/types";
import { ConfirmButton, Empty, StatusBadge, When } from "../components/common";
import { ErrorBanner, formErrors, NumberField, SelectField, TextArea, TextField } from "../components/forms";
import { VersionHistory } from "../components/VersionHistory";
import { jsonEqual, type Json, type JsonObject } from "../json";
import { Link, navigate } from "../router";
import { useLive, useSession } from "../session";
import { ReadOnlyNotice } from "./Providers";
import { byName } from "./shared";

export function AgentsPage() {
  const { canEdit } = useSession();
  const live = useLive();
  const agents = useMemo(() => byName(Object.values(live.agents)), [live.agents]);
  return (
    <section className="page" aria-labelledby="agents-title">
      <div className="page-head">
        <h1 id="agents-title">Agents</h1>
        {canEdit && (
          <Link to="/agents/new" className="button primary">
            New agent
          </Link>
        )}
      </div>
      {live.loaded && agents.length === 0 && <Empty>No agents yet.</Empty>}
      {agents.length > 0 && (
        <table className="table">
          <caption className="sr-only">Agents</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Provider</th>
              <th scope="col">Model</th>
              <th scope="col">Version</th>
              <th scope="col">Updated</th>
            </tr>
          </thead>
          <tbody>
            {agents.map((a) => {
              const provider = live.providers[a.provider_id];
              return (
                <tr key={a.id} data-id={a.id}>
                  <td>
                    <Link to={`/agents/${a.id}`}>{a.name}</Link>
                    {a.description && <div className="muted small">{a.description}</div>}
                  </td>
                  <td>
                    {provider ? (
                      <>
                        {provider.name} <StatusBadge status={provider.validation.status} />
                      </>
                    ) : (
                      <span className="muted">{a.provider_id}</span>
                    )}
                  </td>
                  <td className="mono">{a.model}</td>
                  <td>v{a.version}</td>
                  <td>
                    <When time={a.update_time} />
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </section>
  );
}

export function AgentPage({ id }: { id: string }) {
  const { api, store, canEdit } = useSession();
  const live = useLive();
  const agent = live.agents[id];
  const [missing, setMissing] = useState(false);
  useEffect(() => {
    if (id === "new" || agent || !live.loaded) return;
    const since = store.mark();
    api
      .agent(id)
      .then((a) => store.upsert("agents", a, since))
      .catch(() => setMissing(true));
  }, [id, agent, live.loaded, api, store]);

  if (id === "new") {
    if (!canEdit) return <ReadOnlyNotice />;
    return (
      <section className="page" aria-labelledby="agent-title">
        <h1 id="agent-title">New agent</h1>
        <AgentForm />
      </section>
    );
  }
  if (!agent) {
    return (
      <section className="page">
        <h1>Agent</h1>
        <p>{missing ? "This agent does not exist (or was deleted)." : "Loading…"}</p>
        <Link to="/agents">All agents</Link>
      </section>
    );
  }
  return (
    <section className="page" aria-labelledby="agent-title">
      <div className="page-head">
        <h1 id="agent-title">
          {agent.name} <span className="muted">v{agent.version}</span>
        </h1>
        {canEdit && (
          <Link to={`/playground?agent=${agent.id}`} className="button">
            Try it
          </Link>
        )}
      </div>
      <AgentForm key={agent.id} agent={agent} readOnly={!canEdit} />
      <section className="card" aria-labelledby="agent-versions">
        <h2 id="agent-versions">Version history</h2>
        <VersionHistory
          load={() => api.agentVersions(agent.id)}
          current={agent.version}
          summary={(v) => `${v.model} · ${live.providers[v.provider_id]?.name ?? v.provider_id}`}
          view={(v) => ({
            name: v.name,
            description: v.description,
            provider_id: v.provider_id,
            model: v.model,
            system_prompt: v.system_prompt,
            model_settings: v.model_settings as unknown as Json,
            output_retries: v.output_retries,
            labels: v.labels,
          })}
        />
      </section>
    </section>
  );
}

const SETTINGS: { key: keyof ModelSettings; label: string; integer?: boolean; min: number; max: number; step?: number; hint: string }[] = [
  { key: "temperature", label: "Temperature", min: 0, max: 2, step: 0.1, hint: "0–2; lower is more deterministic." },
  { key: "max_tokens", label: "Max tokens", integer: true, min: 1, max: 1_000_000, hint: "Longest answer, in tokens." },
  { key: "top_p", label: "Top p", min: 0, max: 1, step: 0.05, hint: "0–1 nucleus sampling." },
  { key: "timeout_s", label: "Timeout (s)", min: 0.1, max: 600, step: 1, hint: "Per model request." },
  { key: "seed", label: "Seed", integer: true, min: -2_147_483_648, max: 2_147_483_647, hint: "For repeatable answers, where supported." },
  { key: "presence_penalty", label: "Presence penalty", min: -2, max: 2, step: 0.1, hint: "−2–2." },
  { key: "frequency_penalty", label: "Frequency penalty", min: -2, max: 2, step: 0.1, hint: "−2–2." },
];

const AGENT_FIELDS = [
  "name",
  "description",
  "provider_id",
  "model",
  "system_prompt",
  "model_settings",
  ...SETTINGS.map((s) => `model_settings.${s.key}`),
  "model_settings.stop_sequences",
  "output_retries",
  "labels",
];

const OTHER = "__other__";

function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const trimmed = line.trim();
    if (!trimmed) continue;
    const at = trimmed.indexOf("=");
    if (at < 0) labels[trimmed] = "";
    else labels[trimmed.slice(0, at).trim()] = trimmed.slice(at + 1).trim();
  }
  return labels;
}

function AgentForm({ agent, readOnly }: { agent?: Agent; readOnly?: boolean }) {
  const { api, store } = useSession();
  const live = useLive();
  const providers = useMemo(() => byName(Object.values(live.providers)), [live.providers]);
  const [name, setName] = useState(agent?.name ?? "");
  const [description, setDescription] = useState(agent?.description ?? "");
  const [providerId, setProviderId] = useState(agent?.provider_id ?? "");
  const [model, setModel] = useState(agent?.model ?? "");
  const [otherModel, setOtherModel] = useState(false);
  const [systemPrompt, setSystemPrompt] = useState(agent?.system_prompt ?? "");
  const [settings, setSettings] = useState<ModelSettings>(agent?.model_settings ?? {});
  const [stopText, setStopText] = useState((agent?.model_settings.stop_sequences ?? []).join("\n"));
  const [retries, setRetries] = useState<number | undefined>(agent?.output_retries ?? 2);
  const [labelsText, setLabelsText] = useState(
    Object.entries(agent?.labels ?? {})
      .map(([k, v]) => `${k}=${v}`)
      .join("\n"),
  );
  const [etag, setEtag] = useState(agent?.etag ?? "");
  const [error, setError] = useState<unknown>(null);
  const [saved, setSaved] = useState("");
  const [busy, setBusy] = useState(false);

  // The first provider, once the list has arrived (a new agent only).
  useEffect(() => {
    if (!agent && providerId === "" && providers[0]) setProviderId(providers[0].id);
  }, [agent, providerId, providers]);

  const provider = live.providers[providerId];
  const models = provider?.validation.models ?? [];
  const useSelect = models.length > 0 && !otherModel && (model === "" || models.includes(model));
  useEffect(() => {
    if (!agent && model === "" && models[0]) setModel(models[0]);
  }, [agent, model, models]);

  const errors = formErrors(error, AGENT_FIELDS);
  const stale = agent !== undefined && agent.etag !== etag;

  const reset = (a: Agent) => {
    setName(a.name);
    setDescription(a.description);
    setProviderId(a.provider_id);
    setModel(a.model);
    setSystemPrompt(a.system_prompt);
    setSettings(a.model_settings);
    setStopText((a.model_settings.stop_sequences ?? []).join("\n"));
    setRetries(a.output_retries);
    setLabelsText(
      Object.entries(a.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join("\n"),
    );
    setEtag(a.etag);
    setError(null);
  };

  const fullSettings = (): JsonObject => {
    const out: JsonObject = {};
    for (const s of SETTINGS) {
      const value = settings[s.key];
      if (typeof value === "number") out[s.key] = value;
    }
    const stops = stopText.split("\n").filter((x) => x !== "");
    if (stops.length > 0) out.stop_sequences = stops;
    return out;
  };

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setSaved("");
    const since = store.mark();
    const values: JsonObject = {
      name,
      description,
      provider_id: providerId,
      model,
      system_prompt: systemPrompt,
      model_settings: fullSettings(),
      labels: parseLabels(labelsText),
    };
    if (retries !== undefined) values.output_retries = retries;
    try {
      if (!agent) {
        const created = await api.createAgent(values);
        store.upsert("agents", created, since);
        navigate(`/agents/${created.id}`);
        return;
      }
      const before: JsonObject = {
        name: agent.name,
        description: agent.description,
        provider_id: agent.provider_id,
        model: agent.model,
        system_prompt: agent.system_prompt,
        model_settings: normalizeSettings(agent.model_settings),
        labels: agent.labels,
        output_retries: agent.output_retries,
      };
      const body: JsonObject = { etag };
      for (const [key, value] of Object.entries(values)) {
        if (!jsonEqual(value, before[key])) body[key] = value;
      }
      if (Object.keys(body).length === 1) {
        setSaved("Nothing changed.");
        return;
      }
      const updated = await api.updateAgent(agent.id, body);
      store.upsert("agents", updated, since);
      reset(updated);
      setSaved(`Saved as version ${updated.version}.`);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  const remove = async () => {
    if (!agent) return;
    try {
      await api.deleteAgent(agent.id);
      store.remove("agents", agent.id);
      navigate("/agents");
    } catch (e) {
      setError(e);
    }
  };

  return (
    <form className="card form" onSubmit={submit} aria-label={agent ? "Edit agent" : "New agent"} noValidate>
      <fieldset disabled={readOnly} className="plain">
        {stale && !readOnly && (
          <div className="banner banner-info" role="status">
            A newer version was saved since you opened this agent.{" "}
            <button type="button" className="link-button" onClick={() => agent && reset(agent)}>
              Load the latest
            </button>
          </div>
        )}
        <ErrorBanner errors={errors}>
          {error instanceof ApiError && error.status === 409 && agent && (
            <button type="button" onClick={() => reset(agent)}>
              Load the latest and edit again
            </button>
          )}
        </ErrorBanner>
        <div className="grid-2">
          <TextField label="Name" value={name} onChange={setName} required errors={errors.byField.name} />
          <TextField label="Description" value={description} onChange={setDescription} errors={errors.byField.description} />
        </div>
        <div className="grid-2">
          <SelectField
            label="Provider"
            value={providerId}
            onChange={(v) => {
              setProviderId(v);
              setOtherModel(false);
              setModel(live.providers[v]?.validation.models[0] ?? "");
            }}
            options={[
              ...(providerId === "" || !provider ? [{ value: providerId, label: providerId ? providerId : "Choose a provider" }] : []),
              ...providers.map((p) => ({ value: p.id, label: `${p.name} (${p.type}, ${p.validation.status})` })),
            ]}
            errors={errors.byField.provider_id}
            required
            hint={providers.length === 0 ? "Create a provider first." : undefined}
          />
          {useSelect ? (
            <SelectField
              label="Model"
              value={model}
              onChange={(v) => {
                if (v === OTHER) {
                  setOtherModel(true);
                  setModel("");
                } else setModel(v);
              }}
              options={[...models.map((m) => ({ value: m, label: m })), { value: OTHER, label: "Other (type a name)…" }]}
              errors={errors.byField.model}
              required
              hint="The models the provider's validation found."
            />
          ) : (
            <TextField
              label="Model"
              value={model}
              onChange={setModel}
              required
              errors={errors.byField.model}
              hint={
                models.length > 0 && !readOnly ? (
                  <button type="button" className="link-button" onClick={() => setOtherModel(false)}>
                    Choose from the {models.length} models found
                  </button>
                ) : (
                  "Validation found no models; type the model's name."
                )
              }
            />
          )}
        </div>
        <TextArea
          label="System prompt"
          value={systemPrompt}
          onChange={setSystemPrompt}
          rows={5}
          errors={errors.byField.system_prompt}
          hint="How the agent should behave, whatever the task."
        />
        <fieldset className="group">
          <legend>Model settings</legend>
          <p className="hint">Empty fields use the provider's defaults.</p>
          <div className="grid-4">
            {SETTINGS.map((s) => (
              <NumberField
                key={s.key}
                label={s.label}
                value={settings[s.key] as number | undefined}
                onChange={(v) => setSettings((old) => ({ ...old, [s.key]: v }))}
                integer={s.integer}
                min={s.min}
                max={s.max}
                step={s.step}
                hint={s.hint}
                errors={errors.byField[`model_settings.${s.key}`]}
              />
            ))}
            <NumberField
              label="Output retries"
              value={retries}
              onChange={setRetries}
              integer
              min={0}
              max={10}
              hint="0–10: retries when an answer does not fit the schema."
              errors={errors.byField.output_retries}
            />
          </div>
          <TextArea
            label="Stop sequences"
            value={stopText}
            onChange={setStopText}
            rows={2}
            hint="One per line."
            errors={[...(errors.byField["model_settings.stop_sequences"] ?? []), ...(errors.byField.model_settings ?? [])]}
          />
        </fieldset>
        <TextArea
          label="Labels"
          value={labelsText}
          onChange={setLabelsText}
          rows={2}
          monospace
          hint="key=value, one per line."
          errors={errors.byField.labels}
        />
      </fieldset>
      {!readOnly && (
        <div className="actions">
          <button type="submit" className="primary" disabled={busy}>
            {agent ? "Save new version" : "Create agent"}
          </button>
          {saved && (
            <span className="ok-text" role="status">
              {saved}
            </span>
          )}
          {agent && <ConfirmButton label="Delete" confirmLabel={`Delete ${agent.name}?`} onConfirm={() => void remove()} />}
        </div>
      )}
    </form>
  );
}

function normalizeSettings(settings: ModelSettings): JsonObject {
  const out: JsonObject = {};
  for (const s of SETTINGS) {
    const value = settings[s.key];
    if (typeof value === "number") out[s.key] = value;
  }
  if (settings.stop_sequences && settings.stop_sequences.length > 0) out.stop_sequences = settings.stop_sequences;
  return out;
}
