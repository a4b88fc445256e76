/** The run playground: an agent, a task, its variables as a form; run and see the answer. */

import { useEffect, useMemo, useState, type FormEvent } from "react";
import type { Run } from "../api/types";
import { ErrorBanner, formErrors, SelectField, TextArea } from "../components/forms";
import { Link, queryParam, useLocation } from "../router";
import { useLive, useSession } from "../session";
import { RunResult } from "./Runs";
import { byName } from "./shared";

export function Playground() {
  const { api, store } = useSession();
  const live = useLive();
  const path = useLocation();
  const agents = useMemo(() => byName(Object.values(live.agents)), [live.agents]);
  const tasks = useMemo(() => byName(Object.values(live.tasks)), [live.tasks]);
  const [agentId, setAgentId] = useState(queryParam(path, "agent") ?? "");
  const [taskId, setTaskId] = useState(queryParam(path, "task") ?? "");
  const [variables, setVariables] = useState<Record<string, string>>({});
  const [runId, setRunId] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [started, setStarted] = useState(0);
  const [now, setNow] = useState(0);

  useEffect(() => {
    if (!agentId && agents[0]) setAgentId(agents[0].id);
  }, [agentId, agents]);
  useEffect(() => {
    if (!taskId && tasks[0]) setTaskId(tasks[0].id);
  }, [taskId, tasks]);
  useEffect(() => {
    if (!busy) return;
    const timer = setInterval(() => setNow(Date.now()), 200);
    return () => clearInterval(timer);
  }, [busy]);

  const task = live.tasks[taskId];
  const names = task?.variables ?? [];
  const run: Run | undefined = runId ? live.runs[runId] : undefined;
  const errors = formErrors(error, ["agent_id", "task_id", ...names.map((n) => `variables.${n}`), "variables"]);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setStarted(Date.now());
    setNow(Date.now());
    setError(null);
    const since = store.mark();
    const values: Record<string, string> = {};
    for (const name of names) values[name] = variables[name] ?? "";
    try {
      const finished = await api.createRun({ agent_id: agentId, task_id: taskId, variables: values });
      store.upsert("runs", finished, since);
      setRunId(finished.id);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section className="page" aria-labelledby="playground-title">
      <div className="page-head">
        <h1 id="playground-title">Playground</h1>
      </div>
      <div className="split">
        <form className="card form" onSubmit={submit} aria-label="Run" noValidate>
          <ErrorBanner errors={errors} />
          <SelectField
            label="Agent"
            value={agentId}
            onChange={setAgentId}
            options={[
              ...(agentId && live.agents[agentId] ? [] : [{ value: agentId, label: agents.length ? "Choose an agent" : "No agents yet" }]),
              ...agents.map((a) => ({ value: a.id, label: `${a.name} (${a.model})` })),
            ]}
            errors={errors.byField.agent_id}
            required
          />
          <SelectField
            label="Task"
            value={taskId}
            onChange={(v) => {
              setTaskId(v);
              setVariables({});
            }}
            options={[
              ...(taskId && live.tasks[taskId] ? [] : [{ value: taskId, label: tasks.length ? "Choose a task" : "No tasks yet" }]),
              ...tasks.map((t) => ({ value: t.id, label: t.name })),
            ]}
            errors={errors.byField.task_id}
            required
          />
          {task?.instructions && <p className="hint">{task.instructions}</p>}
          <fieldset className="group">
            <legend>Variables</legend>
            {names.length === 0 && <p className="muted small">This task's prompt has no variables.</p>}
            {names.map((name) => (
              <TextArea
                key={`${taskId}-${name}`}
                label={name}
                value={variables[name] ?? ""}
                rows={2}
                onChange={(v) => setVariables((old) => ({ ...old, [name]: v }))}
                errors={errors.byField[`variables.${name}`]}
              />
            ))}
            {errors.byField.variables?.map((e) => (
              <p className="field-error" key={e}>
                {e}
              </p>
            ))}
          </fieldset>
          <div className="actions">
            <button type="submit" className="primary" disabled={busy || !agentId || !taskId}>
              {busy ? `Running… ${((now - started) / 1000).toFixed(1)} s` : "Run"}
            </button>
            {task && (
              <Link to={`/runs?task=${task.id}`} className="small">
                Runs of this task
              </Link>
            )}
          </div>
        </form>
        <div aria-live="polite">
          {run ? <RunResult run={run} /> : <p className="muted">The answer appears here.</p>}
        </div>
      </div>
    </section>
  );
}
