/** Runs: the live table with filters, one run's details, and the result view the playground shares. */

import { useEffect, useMemo, useState } from "react";
import { RUN_STATUSES, type Run } from "../api/types";
import { AnswerView, Empty, JsonBlock, StatusBadge, When } from "../components/common";
import { SelectField } from "../components/forms";
import { Link, navigate, queryParam, useLocation } from "../router";
import { useLive, useSession } from "../session";
import { byName, newestRuns } from "./shared";

export function RunsPage() {
  const { api, store } = useSession();
  const live = useLive();
  const path = useLocation();
  const agentId = queryParam(path, "agent") ?? "";
  const taskId = queryParam(path, "task") ?? "";
  const status = queryParam(path, "status") ?? "";
  const [token, setToken] = useState("");
  const [error, setError] = useState("");

  const setFilter = (key: string, value: string) => {
    const params = new URLSearchParams(path.split("?")[1] ?? "");
    if (value) params.set(key, value);
    else params.delete(key);
    const query = params.toString();
    navigate(`/runs${query ? `?${query}` : ""}`, { replace: true });
  };

  // The server's newest matching runs (older ones than the live window included).
  useEffect(() => {
    const since = store.mark();
    setError("");
    api
      .runs({ agent_id: agentId, task_id: taskId, status }, 100)
      .then((page) => {
        store.load("runs", page.items, since);
        setToken(page.nextPageToken);
      })
      .catch((e: unknown) => setError(e instanceof Error ? e.message : String(e)));
  }, [agentId, taskId, status, api, store]);

  const loadMore = async () => {
    const since = store.mark();
    try {
      const body = await api.request<{ runs: Run[]; next_page_token: string }>(
        "GET",
        `/v1/runs?${new URLSearchParams({ agent_id: agentId, task_id: taskId, status, page_size: "100", page_token: token })}`,
      );
      store.load("runs", body.runs, since);
      setToken(body.next_page_token);
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    }
  };

  const runs = useMemo(
    () =>
      newestRuns(
        Object.values(live.runs).filter(
          (r) => (!agentId || r.agent_id === agentId) && (!taskId || r.task_id === taskId) && (!status || r.status === status),
        ),
      ),
    [live.runs, agentId, taskId, status],
  );
  const agents = byName(Object.values(live.agents));
  const tasks = byName(Object.values(live.tasks));
  return (
    <section className="page" aria-labelledby="runs-title">
      <div className="page-head">
        <h1 id="runs-title">Runs</h1>
      </div>
      <div className="filters" role="search" aria-label="Filter runs">
        <SelectField
          label="Agent"
          value={agentId}
          onChange={(v) => setFilter("agent", v)}
          options={[{ value: "", label: "any agent" }, ...agents.map((a) => ({ value: a.id, label: a.name }))]}
        />
        <SelectField
          label="Task"
          value={taskId}
          onChange={(v) => setFilter("task", v)}
          options={[{ value: "", label: "any task" }, ...tasks.map((t) => ({ value: t.id, label: t.name }))]}
        />
        <SelectField
          label="Status"
          value={status}
          onChange={(v) => setFilter("status", v)}
          options={[{ value: "", label: "any status" }, ...RUN_STATUSES.map((s) => ({ value: s, label: s }))]}
        />
      </div>
      {error && (
        <p className="field-error" role="alert">
          {error}
        </p>
      )}
      {runs.length === 0 ? (
        <Empty>No runs match.</Empty>
      ) : (
        <table className="table" aria-label="Runs">
          <thead>
            <tr>
              <th scope="col">Run</th>
              <th scope="col">Agent</th>
              <th scope="col">Task</th>
              <th scope="col">Status</th>
              <th scope="col">Latency</th>
              <th scope="col">Tokens (in / out)</th>
              <th scope="col">Started</th>
            </tr>
          </thead>
          <tbody>
            {runs.map((r) => (
              <tr key={r.id} data-id={r.id}>
                <td>
                  <Link to={`/runs/${r.id}`} className="mono">
                    {r.id}
                  </Link>
                </td>
                <td>
                  {live.agents[r.agent_id]?.name ?? <span className="mono">{r.agent_id}</span>}{" "}
                  <span className="muted small">v{r.agent_version}</span>
                </td>
                <td>
                  {live.tasks[r.task_id]?.name ?? <span className="mono">{r.task_id}</span>}{" "}
                  <span className="muted small">v{r.task_version}</span>
                </td>
                <td>
                  <StatusBadge status={r.status} />
                </td>
                <td>{r.status === "succeeded" || r.status === "failed" ? `${r.latency_ms} ms` : "—"}</td>
                <td>
                  {r.usage.input_tokens} / {r.usage.output_tokens}
                </td>
                <td>
                  <When time={r.create_time} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {token && (
        <button type="button" onClick={() => void loadMore()}>
          Load older runs
        </button>
      )}
    </section>
  );
}

export function RunPage({ id }: { id: string }) {
  const { api, store } = useSession();
  const live = useLive();
  const run = live.runs[id];
  const [missing, setMissing] = useState(false);
  useEffect(() => {
    if (run) return;
    const since = store.mark();
    api
      .run(id)
      .then((r) => store.upsert("runs", r, since))
      .catch(() => setMissing(true));
  }, [id, run, api, store]);
  if (!run) {
    return (
      <section className="page">
        <h1>Run</h1>
        <p>{missing ? "This run does not exist." : "Loading…"}</p>
        <Link to="/runs">All runs</Link>
      </section>
    );
  }
  return (
    <section className="page" aria-labelledby="run-title">
      <div className="page-head">
        <h1 id="run-title" className="mono">
          {run.id}
        </h1>
        <StatusBadge status={run.status} />
      </div>
      <RunResult run={run} />
    </section>
  );
}

/** A run's outcome: the answer as fields and as JSON, attempts, usage, latency, prompt. */
export function RunResult({ run }: { run: Run }) {
  const live = useLive();
  const done = run.status === "succeeded" || run.status === "failed";
  return (
    <section className="card run-result" aria-label="Run result" data-status={run.status}>
      <header className="card-head">
        <h2>
          Result <StatusBadge status={run.status} />
        </h2>
        <Link to={`/runs/${run.id}`} className="small">
          {run.id}
        </Link>
      </header>
      <dl className="facts facts-inline">
        <dt>Agent</dt>
        <dd>
          {live.agents[run.agent_id]?.name ?? run.agent_id} v{run.agent_version}
        </dd>
        <dt>Task</dt>
        <dd>
          {live.tasks[run.task_id]?.name ?? run.task_id} v{run.task_version}
        </dd>
        <dt>Attempts</dt>
        <dd>{run.attempts}</dd>
        <dt>Latency</dt>
        <dd>{done ? `${run.latency_ms} ms` : "—"}</dd>
        <dt>Requests</dt>
        <dd>{run.usage.requests}</dd>
        <dt>Tokens</dt>
        <dd>
          {run.usage.input_tokens} in / {run.usage.output_tokens} out
        </dd>
        <dt>Started</dt>
        <dd>
          <When time={run.start_time ?? run.create_time} />
        </dd>
      </dl>
      {run.error && (
        <div className="banner banner-error" role="alert">
          <strong>{run.error.code}</strong>: {run.error.message}
        </div>
      )}
      {run.output && (
        <div className="answer-grid">
          <section aria-labelledby={`answer-${run.id}`} className="answer">
            <h3 id={`answer-${run.id}`}>Answer</h3>
            <AnswerView value={run.output} />
          </section>
          <section aria-labelledby={`raw-${run.id}`}>
            <h3 id={`raw-${run.id}`}>Raw JSON</h3>
            <JsonBlock value={run.output} label="Raw answer" />
          </section>
        </div>
      )}
      {!done && <p className="muted">Waiting for the answer…</p>}
      <details>
        <summary>Prompt and variables</summary>
        <pre className="prompt">{run.prompt}</pre>
        <JsonBlock value={run.variables} label="Variables" />
      </details>
    </section>
  );
}
