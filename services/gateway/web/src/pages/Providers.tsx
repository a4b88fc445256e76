/** Providers: list, detail with live validation, create/edit, validate, delete. */

import { useEffect, useMemo, useState, type FormEvent } from "react";
import { ApiError } from "../api/client";
import { NEEDS_API_KEY, NEEDS_BASE_URL, PROVIDER_TYPES, type Provider } from "../api/types";
import { ConfirmButton, Empty, StatusBadge, When } from "../components/common";
import { ErrorBanner, formErrors, SelectField, TextArea, TextField } from "../components/forms";
import { isObject, jsonEqual, pretty, type JsonObject } from "../json";
import { Link, navigate } from "../router";
import { useLive, useSession } from "../session";
import { byName } from "./shared";

const TYPE_LABELS: Record<string, string> = {
  openai: "OpenAI",
  anthropic: "Anthropic",
  google: "Google",
  groq: "Groq",
  mistral: "Mistral",
  ollama: "Ollama",
  openai_compatible: "OpenAI-compatible",
  test: "Test (offline, answers examples)",
};

export function ProvidersPage() {
  const { canEdit } = useSession();
  const live = useLive();
  const providers = useMemo(() => byName(Object.values(live.providers)), [live.providers]);
  return (
    <section className="page" aria-labelledby="providers-title">
      <div className="page-head">
        <h1 id="providers-title">Providers</h1>
        {canEdit && (
          <Link to="/providers/new" className="button primary">
            New provider
          </Link>
        )}
      </div>
      {live.loaded && providers.length === 0 && <Empty>No providers yet.</Empty>}
      <div className="cards">
        {providers.map((p) => (
          <ProviderCard key={p.id} provider={p} />
        ))}
      </div>
    </section>
  );
}

function ProviderCard({ provider: p }: { provider: Provider }) {
  const { canEdit } = useSession();
  return (
    <article className="card" aria-label={`Provider ${p.name}`} data-id={p.id}>
      <header className="card-head">
        <h2>
          <Link to={`/providers/${p.id}`}>{p.name}</Link>
        </h2>
        <StatusBadge status={p.validation.status} />
      </header>
      <dl className="facts">
        <dt>Type</dt>
        <dd>{TYPE_LABELS[p.type] ?? p.type}</dd>
        {p.base_url && (
          <>
            <dt>Base URL</dt>
            <dd className="mono">{p.base_url}</dd>
          </>
        )}
        <dt>Key</dt>
        <dd className="mono">{p.api_key_hint || <span className="muted">none</span>}</dd>
        <dt>Checked</dt>
        <dd>
          <When time={p.validation.checked_time} />
        </dd>
      </dl>
      {p.validation.detail && <p className="muted small">{p.validation.detail}</p>}
      <Models models={p.validation.models} />
      {canEdit && (
        <div className="actions">
          <Link to={`/providers/${p.id}`} className="button small">
            Edit
          </Link>
          <ValidateButton provider={p} small />
        </div>
      )}
    </article>
  );
}

function Models({ models }: { models: string[] }) {
  if (models.length === 0) return <p className="muted small">No models found yet.</p>;
  return (
    <ul className="chips" aria-label="Models found">
      {models.slice(0, 40).map((m) => (
        <li key={m} className="chip">
          {m}
        </li>
      ))}
      {models.length > 40 && <li className="chip muted">+{models.length - 40} more</li>}
    </ul>
  );
}

/** `POST :validate` (202); a 429 disables the button for Retry-After seconds. */
function ValidateButton({ provider, small }: { provider: Provider; small?: boolean }) {
  const { api, store } = useSession();
  const [waitUntil, setWaitUntil] = useState(0);
  const [now, setNow] = useState(Date.now());
  const [error, setError] = useState("");
  useEffect(() => {
    if (waitUntil <= now) return;
    const timer = setTimeout(() => setNow(Date.now()), 500);
    return () => clearTimeout(timer);
  }, [waitUntil, now]);
  const waiting = Math.ceil((waitUntil - now) / 1000);
  const validate = async () => {
    setError("");
    const since = store.mark();
    try {
      store.upsert("providers", await api.validateProvider(provider.id), since);
    } catch (e) {
      if (e instanceof ApiError && e.status === 429) {
        const seconds = e.retryAfterS ?? 5;
        setWaitUntil(Date.now() + seconds * 1000);
        setNow(Date.now());
        setError(`Validated recently; try again in ${Math.ceil(seconds)} s.`);
      } else setError(e instanceof Error ? e.message : String(e));
    }
  };
  return (
    <>
      <button
        type="button"
        className={small ? "small" : undefined}
        onClick={validate}
        disabled={waiting > 0 || provider.validation.status === "pending"}
      >
        {provider.validation.status === "pending" ? "Validating…" : waiting > 0 ? `Validate (${waiting} s)` : "Validate"}
      </button>
      {error && (
        <span className="field-error" role="status">
          {error}
        </span>
      )}
    </>
  );
}

export function ProviderPage({ id }: { id: string }) {
  const { api, store, canEdit } = useSession();
  const live = useLive();
  const provider = live.providers[id];
  const [missing, setMissing] = useState(false);
  useEffect(() => {
    if (id === "new" || provider || !live.loaded) return;
    const since = store.mark();
    api
      .request<Provider>("GET", `/v1/providers/${encodeURIComponent(id)}`)
      .then((p) => store.upsert("providers", p, since))
      .catch(() => setMissing(true));
  }, [id, provider, live.loaded, api, store]);

  if (id === "new") {
    if (!canEdit) return <ReadOnlyNotice />;
    return (
      <section className="page" aria-labelledby="provider-title">
        <h1 id="provider-title">New provider</h1>
        <ProviderForm />
      </section>
    );
  }
  if (!provider) {
    return (
      <section className="page">
        <h1>Provider</h1>
        <p>{missing ? "This provider does not exist (or was deleted)." : "Loading…"}</p>
        <Link to="/providers">All providers</Link>
      </section>
    );
  }
  return (
    <section className="page" aria-labelledby="provider-title">
      <div className="page-head">
        <h1 id="provider-title">{provider.name}</h1>
        <StatusBadge status={provider.validation.status} />
      </div>
      <div className="split">
        <div>
          {canEdit ? (
            <ProviderForm provider={provider} />
          ) : (
            <dl className="facts card">
              <dt>Type</dt>
              <dd>{TYPE_LABELS[provider.type]}</dd>
              <dt>Base URL</dt>
              <dd className="mono">{provider.base_url || "—"}</dd>
              <dt>Key</dt>
              <dd className="mono">{provider.api_key_hint || "none"}</dd>
              <dt>Config</dt>
              <dd>
                <pre className="json">{pretty(provider.config)}</pre>
              </dd>
            </dl>
          )}
        </div>
        <aside className="card" aria-labelledby="validation-title">
          <h2 id="validation-title">Validation</h2>
          <dl className="facts">
            <dt>Status</dt>
            <dd>
              <StatusBadge status={provider.validation.status} />
            </dd>
            <dt>Detail</dt>
            <dd>{provider.validation.detail || "—"}</dd>
            <dt>Checked</dt>
            <dd>
              <When time={provider.validation.checked_time} />
            </dd>
          </dl>
          <h3>Models found</h3>
          <Models models={provider.validation.models} />
          {canEdit && (
            <div className="actions">
              <ValidateButton provider={provider} />
            </div>
          )}
        </aside>
      </div>
    </section>
  );
}

export function ReadOnlyNotice() {
  return (
    <section className="page">
      <h1>Read-only</h1>
      <p>Your API key can look but not change anything.</p>
    </section>
  );
}

const PROVIDER_FIELDS = ["name", "type", "base_url", "api_key", "config"] as const;

function ProviderForm({ provider }: { provider?: Provider }) {
  const { api, store } = useSession();
  const [name, setName] = useState(provider?.name ?? "");
  const [type, setType] = useState<string>(provider?.type ?? "openai");
  const [baseUrl, setBaseUrl] = useState(provider?.base_url ?? "");
  const [apiKey, setApiKey] = useState("");
  const [replacingKey, setReplacingKey] = useState(!provider);
  const [configText, setConfigText] = useState(provider ? pretty(provider.config) : "{}");
  const [etag, setEtag] = useState(provider?.etag ?? "");
  const [error, setError] = useState<unknown>(null);
  const [saved, setSaved] = useState("");
  const [busy, setBusy] = useState(false);

  const reset = (p: Provider) => {
    setName(p.name);
    setType(p.type);
    setBaseUrl(p.base_url);
    setApiKey("");
    setReplacingKey(false);
    setConfigText(pretty(p.config));
    setEtag(p.etag);
    setError(null);
  };

  let config: JsonObject | null = null;
  let configError = "";
  try {
    const parsed: unknown = JSON.parse(configText || "{}");
    if (isObject(parsed)) config = parsed;
    else configError = "must be a JSON object";
  } catch {
    configError = "is not valid JSON";
  }

  const needsUrl = NEEDS_BASE_URL.has(type);
  const needsKey = NEEDS_API_KEY.has(type);
  const showUrl = needsUrl || (type !== "test" && baseUrl !== "");
  const errors = formErrors(error, PROVIDER_FIELDS);
  const stale = provider !== undefined && provider.etag !== etag;

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (!config) return;
    setBusy(true);
    setError(null);
    setSaved("");
    const since = store.mark();
    try {
      if (!provider) {
        const body: JsonObject = { name, type };
        if (type !== "test" && baseUrl) body.base_url = baseUrl;
        if (type !== "test" && apiKey) body.api_key = apiKey;
        if (Object.keys(config).length > 0) body.config = config;
        const created = await api.createProvider(body);
        store.upsert("providers", created, since);
        navigate(`/providers/${created.id}`);
        return;
      }
      const body: JsonObject = { etag };
      if (name !== provider.name) body.name = name;
      if (type !== provider.type) body.type = type;
      const url = type === "test" ? "" : baseUrl;
      if (url !== provider.base_url) body.base_url = url;
      if (replacingKey) body.api_key = type === "test" ? "" : apiKey;
      else if (type === "test" && provider.api_key_hint) body.api_key = "";
      if (!jsonEqual(config, provider.config)) body.config = config;
      if (Object.keys(body).length === 1) {
        setSaved("Nothing changed.");
        return;
      }
      const updated = await api.updateProvider(provider.id, body);
      store.upsert("providers", updated, since);
      reset(updated);
      setSaved("Saved.");
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  const remove = async (force: boolean) => {
    if (!provider) return;
    setError(null);
    try {
      await api.deleteProvider(provider.id, force);
      store.remove("providers", provider.id);
      navigate("/providers");
    } catch (e) {
      setError(e);
    }
  };

  const inUse = error instanceof ApiError && error.reason === "PROVIDER_IN_USE";
  return (
    <form className="card form" onSubmit={submit} aria-label={provider ? "Edit provider" : "New provider"} noValidate>
      {stale && (
        <div className="banner banner-info" role="status">
          This provider changed since you opened it.{" "}
          <button type="button" className="link-button" onClick={() => provider && reset(provider)}>
            Load the latest
          </button>
        </div>
      )}
      <ErrorBanner errors={errors}>
        {error instanceof ApiError && error.status === 409 && provider && (
          <button type="button" onClick={() => reset(provider)}>
            Load the latest and edit again
          </button>
        )}
        {inUse && (
          <button type="button" className="danger" onClick={() => void remove(true)}>
            Delete anyway
          </button>
        )}
      </ErrorBanner>
      <TextField label="Name" value={name} onChange={setName} required errors={errors.byField.name} hint="Lowercase letters, digits and dashes." />
      <SelectField
        label="Type"
        value={type}
        onChange={setType}
        options={PROVIDER_TYPES.map((t) => ({ value: t, label: TYPE_LABELS[t] ?? t }))}
        errors={errors.byField.type}
        required
      />
      {showUrl && (
        <TextField
          label="Base URL"
          type="url"
          value={baseUrl}
          onChange={setBaseUrl}
          required={needsUrl}
          placeholder={type === "ollama" ? "http://localhost:11434" : "https://…/v1"}
          errors={errors.byField.base_url}
          hint={needsUrl ? `Required for ${TYPE_LABELS[type]}.` : "Optional: a different endpoint."}
        />
      )}
      {type !== "test" &&
        (replacingKey ? (
          <TextField
            label={provider ? "New API key" : "API key"}
            type="password"
            value={apiKey}
            onChange={setApiKey}
            required={needsKey}
            autoComplete="new-password"
            errors={errors.byField.api_key}
            hint={
              provider
                ? "Leave empty to remove the key. The key is stored encrypted and never shown again."
                : "Stored encrypted; only a hint of it is shown afterwards."
            }
          />
        ) : (
          <div className="field">
            <span className="label">API key</span>
            <p>
              <span className="mono">{provider?.api_key_hint || "none"}</span>{" "}
              <button type="button" className="small" onClick={() => setReplacingKey(true)}>
                Replace key
              </button>
            </p>
            {errors.byField.api_key?.map((e) => (
              <p className="field-error" key={e}>
                {e}
              </p>
            ))}
          </div>
        ))}
      <TextArea
        label="Config (JSON)"
        value={configText}
        onChange={setConfigText}
        rows={4}
        monospace
        errors={[...(configError ? [`Config ${configError}`] : []), ...(errors.byField.config ?? [])]}
        hint='Optional, e.g. {"headers": {"X-Org": "…"}}.'
      />
      <div className="actions">
        <button type="submit" className="primary" disabled={busy || !config}>
          {provider ? "Save" : "Create provider"}
        </button>
        {saved && (
          <span className="ok-text" role="status">
            {saved}
          </span>
        )}
        {provider && (
          <ConfirmButton label="Delete" confirmLabel={`Delete ${provider.name}?`} onConfirm={() => void remove(false)} />
        )}
      </div>
    </form>
  );
}
