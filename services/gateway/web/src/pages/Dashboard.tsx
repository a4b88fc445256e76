/** The dashboard: one card per collection, all updating live. */

import { useMemo } from "react";
import { Empty, StatusBadge, When } from "../components/common";
import { Link } from "../router";
import { useLive, useSession } from "../session";
import { byName, newestRuns, plural } from "./shared";

export function Dashboard() {
  const { canEdit } = useSession();
  const live = useLive();
  const providers = useMemo(() => byName(Object.values(live.providers)), [live.providers]);
  const agents = useMemo(() => byName(Object.values(live.agents)), [live.agents]);
  const tasks = useMemo(() => byName(Object.values(live.tasks)), [live.tasks]);
  const runs = useMemo(() => newestRuns(Object.values(live.runs)).slice(0, 8), [live.runs]);
  const loading = !live.loaded;
  return (
    <section className="page" aria-labelledby="dashboard-title">
      <div className="page-head">
        <h1 id="dashboard-title">Dashboard</h1>
        {canEdit && (
          <Link to="/playground" className="button primary">
            Open the playground
          </Link>
        )}
      </div>
      <div className="cards">
        <article className="card" aria-labelledby="card-providers">
          <header className="card-head">
            <h2 id="card-providers">
              <Link to="/providers">Providers</Link> <span className="count">{providers.length}</span>
            </h2>
            {canEdit && (
              <Link to="/providers/new" className="button small">
                New provider
              </Link>
            )}
          </header>
          {loading ? (
            <p className="muted">Loading…</p>
          ) : providers.length === 0 ? (
            <Empty>No providers yet. A provider is where models are served (OpenAI, Ollama, …).</Empty>
          ) : (
            <ul className="rows" aria-label="Providers">
              {providers.map((p) => (
                <li key={p.id} data-id={p.id}>
                  <Link to={`/providers/${p.id}`}>{p.name}</Link>
                  <span className="muted">{p.type}</span>
                  <StatusBadge status={p.validation.status} />
                  <span className="muted small">{plural(p.validation.models.length, "model")}</span>
                </li>
              ))}
            </ul>
          )}
        </article>
        <article className="card" aria-labelledby="card-agents">
          <header className="card-head">
            <h2 id="card-agents">
              <Link to="/agents">Agents</Link> <span className="count">{agents.length}</span>
            </h2>
            {canEdit && (
              <Link to="/agents/new" className="button small">
                New agent
              </Link>
            )}
          </header>
          {loading ? (
            <p className="muted">Loading…</p>
          ) : agents.length === 0 ? (
            <Empty>No agents yet. An agent is a model of a provider with its instructions and settings.</Empty>
          ) : (
            <ul className="rows" aria-label="Agents">
              {agents.map((a) => (
                <li key={a.id} data-id={a.id}>
                  <Link to={`/agents/${a.id}`}>{a.name}</Link>
                  <span className="muted">{a.model}</span>
                  <span className="muted small">v{a.version}</span>
                </li>
              ))}
            </ul>
          )}
        </article>
        <article className="card" aria-labelledby="card-tasks">
          <header className="card-head">
            <h2 id="card-tasks">
              <Link to="/tasks">Tasks</Link> <span className="count">{tasks.length}</span>
            </h2>
            {canEdit && (
              <Link to="/tasks/new" className="button small">
                New task
              </Link>
            )}
          </header>
          {loading ? (
            <p className="muted">Loading…</p>
          ) : tasks.length === 0 ? (
            <Empty>No tasks yet. A task says what to do and the shape of the answer.</Empty>
          ) : (
            <ul className="rows" aria-label="Tasks">
              {tasks.map((t) => (
                <li key={t.id} data-id={t.id}>
                  <Link to={`/tasks/${t.id}`}>{t.name}</Link>
                  <span className="muted small">{plural(Object.keys((t.response_schema.properties as object | undefined) ?? {}).length, "field")}</span>
                  <span className="muted small">v{t.version}</span>
                </li>
              ))}
            </ul>
          )}
        </article>
        <article className="card card-wide" aria-labelledby="card-runs">
          <header className="card-head">
            <h2 id="card-runs">
              <Link to="/runs">Recent runs</Link>
            </h2>
          </header>
          {loading ? (
            <p className="muted">Loading…</p>
          ) : runs.length === 0 ? (
            <Empty>No runs yet.{canEdit && " Try one in the playground."}</Empty>
          ) : (
            <ul className="rows" aria-label="Recent runs">
              {runs.map((r) => (
                <li key={r.id} data-id={r.id}>
                  <Link to={`/runs/${r.id}`}>{r.id}</Link>
                  <span>{live.agents[r.agent_id]?.name ?? r.agent_id}</span>
                  <span className="muted">{live.tasks[r.task_id]?.name ?? r.task_id}</span>
                  <StatusBadge status={r.status} />
                  <When time={r.create_time} />
                </li>
              ))}
            </ul>
          )}
        </article>
      </div>
    </section>
  );
}
