/** Tasks: list, and the editor (template variables, schema builder, verdict, versions). */

import { useEffect, useMemo, useRef, useState, type FormEvent } from "react";
import { ApiError } from "../api/client";
import type { SchemaIssue, SchemaVerdict, Task } from "../api/types";
import { ConfirmButton, Empty, JsonBlock, When } from "../components/common";
import { ErrorBanner, formErrors, TextArea, TextField } from "../components/forms";
import { VersionHistory } from "../components/VersionHistory";
import { jsonEqual, type JsonObject } from "../json";
import { Link, navigate } from "../router";
import { breakingChanges, type BreakingChange } from "../schema/breaking";
import { fromJsonSchema, ImportError, requiredFirst, toJsonSchema, type ImportNote } from "../schema/convert";
import { issuesByCard } from "../schema/issues";
import { emptyDoc, localProblems, type SchemaDoc } from "../schema/model";
import { SchemaBuilder } from "../schema/SchemaBuilder";
import { useLive, useSession } from "../session";
import { scanTemplate } from "../template";
import { ReadOnlyNotice } from "./Providers";
import { byName, plural } from "./shared";

export function TasksPage() {
  const { canEdit } = useSession();
  const live = useLive();
  const tasks = useMemo(() => byName(Object.values(live.tasks)), [live.tasks]);
  return (
    <section className="page" aria-labelledby="tasks-title">
      <div className="page-head">
        <h1 id="tasks-title">Tasks</h1>
        {canEdit && (
          <Link to="/tasks/new" className="button primary">
            New task
          </Link>
        )}
      </div>
      {live.loaded && tasks.length === 0 && <Empty>No tasks yet.</Empty>}
      {tasks.length > 0 && (
        <table className="table">
          <caption className="sr-only">Tasks</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Variables</th>
              <th scope="col">Answer fields</th>
              <th scope="col">Version</th>
              <th scope="col">Updated</th>
            </tr>
          </thead>
          <tbody>
            {tasks.map((t) => (
              <tr key={t.id} data-id={t.id}>
                <td>
                  <Link to={`/tasks/${t.id}`}>{t.name}</Link>
                  {t.description && <div className="muted small">{t.description}</div>}
                </td>
                <td className="mono">{t.variables.join(", ") || <span className="muted">none</span>}</td>
                <td>{Object.keys((t.response_schema.properties as object | undefined) ?? {}).join(", ")}</td>
                <td>v{t.version}</td>
                <td>
                  <When time={t.update_time} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

export function TaskPage({ id }: { id: string }) {
  const { api, store, canEdit } = useSession();
  const live = useLive();
  const task = live.tasks[id];
  const [missing, setMissing] = useState(false);
  useEffect(() => {
    if (id === "new" || task || !live.loaded) return;
    const since = store.mark();
    api
      .task(id)
      .then((t) => store.upsert("tasks", t, since))
      .catch(() => setMissing(true));
  }, [id, task, live.loaded, api, store]);

  if (id === "new") {
    if (!canEdit) return <ReadOnlyNotice />;
    return (
      <section className="page" aria-labelledby="task-title">
        <h1 id="task-title">New task</h1>
        <TaskEditor />
      </section>
    );
  }
  if (!task) {
    return (
      <section className="page">
        <h1>Task</h1>
        <p>{missing ? "This task does not exist (or was deleted)." : "Loading…"}</p>
        <Link to="/tasks">All tasks</Link>
      </section>
    );
  }
  return (
    <section className="page" aria-labelledby="task-title">
      <div className="page-head">
        <h1 id="task-title">
          {task.name} <span className="muted">v{task.version}</span>
        </h1>
        {canEdit && (
          <Link to={`/playground?task=${task.id}`} className="button">
            Run it
          </Link>
        )}
      </div>
      <TaskEditor key={task.id} task={task} readOnly={!canEdit} />
      <section className="card" aria-labelledby="task-versions">
        <h2 id="task-versions">Version history</h2>
        <VersionHistory
          load={() => api.taskVersions(task.id)}
          current={task.version}
          summary={(v) =>
            `${plural(Object.keys((v.response_schema.properties as object | undefined) ?? {}).length, "answer field")}; variables: ${v.variables.join(", ") || "none"}`
          }
          view={(v) => ({
            name: v.name,
            description: v.description,
            instructions: v.instructions,
            prompt_template: v.prompt_template,
            response_schema: v.response_schema,
          })}
        />
      </section>
    </section>
  );
}

const TASK_FIELDS = ["name", "description", "instructions", "prompt_template", "response_schema"];

function docFrom(schema: JsonObject): { doc: SchemaDoc; notes: ImportNote[] } {
  try {
    return fromJsonSchema(requiredFirst(schema));
  } catch (e) {
    return { doc: emptyDoc(), notes: [{ pointer: "", message: e instanceof Error ? e.message : String(e) }] };
  }
}

function TaskEditor({ task, readOnly = false }: { task?: Task; readOnly?: boolean }) {
  const { api, store } = useSession();
  const [initial] = useState(() => (task ? docFrom(task.response_schema) : { doc: emptyDoc(), notes: [] }));
  const [name, setName] = useState(task?.name ?? "");
  const [description, setDescription] = useState(task?.description ?? "");
  const [instructions, setInstructions] = useState(task?.instructions ?? "");
  const [template, setTemplate] = useState(task?.prompt_template ?? "");
  const [doc, setDoc] = useState<SchemaDoc>(initial.doc);
  const [notes, setNotes] = useState<ImportNote[]>(initial.notes);
  const [etag, setEtag] = useState(task?.etag ?? "");
  const [base, setBase] = useState<Task | undefined>(task);
  const [verdict, setVerdict] = useState<SchemaVerdict | null>(null);
  const [checking, setChecking] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [saved, setSaved] = useState("");
  const [busy, setBusy] = useState(false);
  const [confirming, setConfirming] = useState<BreakingChange[] | null>(null);
  const [importing, setImporting] = useState(false);

  const schema = useMemo(() => toJsonSchema(doc), [doc]);
  const schemaText = JSON.stringify(schema);
  const scan = useMemo(() => scanTemplate(template), [template]);

  // The server's verdict, debounced while editing; only the latest answer counts.
  const checkSeq = useRef(0);
  useEffect(() => {
    if (readOnly) return;
    const seq = ++checkSeq.current;
    setChecking(true);
    const timer = setTimeout(() => {
      api
        .checkSchema(JSON.parse(schemaText) as JsonObject)
        .then((v) => seq === checkSeq.current && setVerdict(v))
        .catch(() => seq === checkSeq.current && setVerdict(null))
        .finally(() => seq === checkSeq.current && setChecking(false));
    }, 400);
    return () => clearTimeout(timer);
  }, [schemaText, api, readOnly]);

  const errors = formErrors(error, TASK_FIELDS);
  const savePointer = error instanceof ApiError ? error.metadata.pointer : undefined;
  const saveIssues: SchemaIssue[] =
    savePointer !== undefined && errors.byField.response_schema
      ? [{ pointer: savePointer, message: (errors.byField.response_schema[0] ?? "").replace(/^[^:]*: /, ""), provider_types: [] }]
      : [];
  const issues = issuesByCard(doc, verdict, saveIssues);
  const localCount = localProblems(doc).size;
  const breaking = useMemo(() => (base ? breakingChanges(base.response_schema, schema) : []), [base, schema]);
  const stale = task !== undefined && task.etag !== etag;

  const reset = (t: Task) => {
    const next = docFrom(t.response_schema);
    setName(t.name);
    setDescription(t.description);
    setInstructions(t.instructions);
    setTemplate(t.prompt_template);
    setDoc(next.doc);
    setNotes(next.notes);
    setEtag(t.etag);
    setBase(t);
    setError(null);
    setConfirming(null);
  };

  const save = async (acceptBreaking: boolean) => {
    setError(null);
    setSaved("");
    if (base && breaking.length > 0 && !acceptBreaking) {
      setConfirming(breaking);
      return;
    }
    setConfirming(null);
    setBusy(true);
    const since = store.mark();
    const values: JsonObject = { name, description, instructions, prompt_template: template, response_schema: schema };
    try {
      if (!base) {
        const created = await api.createTask(values);
        store.upsert("tasks", created, since);
        navigate(`/tasks/${created.id}`);
        return;
      }
      const before: JsonObject = {
        name: base.name,
        description: base.description,
        instructions: base.instructions,
        prompt_template: base.prompt_template,
        response_schema: base.response_schema,
      };
      const body: JsonObject = { etag };
      for (const [key, value] of Object.entries(values)) if (!jsonEqual(value, before[key])) body[key] = value;
      if (Object.keys(body).length === 1) {
        setSaved("Nothing changed.");
        return;
      }
      const updated = await api.updateTask(base.id, body);
      store.upsert("tasks", updated, since);
      reset(updated);
      setSaved(`Saved as version ${updated.version}.`);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  const submit = (event: FormEvent) => {
    event.preventDefault();
    void save(false);
  };

  const remove = async () => {
    if (!base) return;
    try {
      await api.deleteTask(base.id);
      store.remove("tasks", base.id);
      navigate("/tasks");
    } catch (e) {
      setError(e);
    }
  };

  const errorCount = [...issues.values()].reduce((n, i) => n + i.errors.length, 0);
  const warningCount = [...issues.values()].reduce((n, i) => n + i.warnings.length, 0);

  return (
    <form
      className="task-editor"
      onSubmit={submit}
      onKeyDown={(event) => {
        // Enter in a field (a property name, say) must not save a version; the button does.
        const target = event.target as HTMLElement;
        if (event.key === "Enter" && target instanceof HTMLInputElement && target.type !== "submit") {
          event.preventDefault();
        }
      }}
      aria-label={base ? "Edit task" : "New task"}
      noValidate
    >
      {stale && !readOnly && (
        <div className="banner banner-info" role="status">
          A newer version of this task was saved since you opened it.{" "}
          <button type="button" className="link-button" onClick={() => task && reset(task)}>
            Load the latest
          </button>
        </div>
      )}
      <ErrorBanner errors={errors}>
        {error instanceof ApiError && error.status === 409 && task && (
          <button type="button" onClick={() => reset(task)}>
            Load the latest and edit again
          </button>
        )}
      </ErrorBanner>
      <fieldset className="card plain-card" disabled={readOnly}>
        <legend className="card-legend">Task</legend>
        <div className="grid-2">
          <TextField label="Name" value={name} onChange={setName} required errors={errors.byField.name} />
          <TextField label="Description" value={description} onChange={setDescription} errors={errors.byField.description} />
        </div>
        <TextArea
          label="Instructions"
          value={instructions}
          onChange={setInstructions}
          rows={4}
          errors={errors.byField.instructions}
          hint="What the agent should do, for every input."
        />
        <TextArea
          label="Prompt template"
          value={template}
          onChange={setTemplate}
          rows={3}
          monospace
          errors={[...scan.problems.map((p) => p.message), ...(errors.byField.prompt_template ?? [])]}
          hint="The input of each run. {name} is a variable filled at run time; {{ and }} are literal braces."
        />
        <div className="variables" aria-live="polite">
          <span className="label">Variables:</span>{" "}
          {scan.variables.length === 0 ? (
            <span className="muted">none</span>
          ) : (
            <ul className="chips inline" aria-label="Template variables">
              {scan.variables.map((v) => (
                <li key={v} className="chip">
                  {v}
                </li>
              ))}
            </ul>
          )}
        </div>
      </fieldset>

      <section className="card" aria-labelledby="schema-title">
        <div className="page-head">
          <h2 id="schema-title">Answer schema</h2>
          {!readOnly && (
            <button type="button" onClick={() => setImporting((v) => !v)} aria-expanded={importing}>
              Import JSON Schema
            </button>
          )}
        </div>
        <p className="hint">
          The shape every answer must have. Build it with cards (descriptions tell the model what to put in each field);
          the JSON beside it is exactly what is saved.
        </p>
        {importing && !readOnly && (
          <ImportPanel
            onImport={(next, importNotes) => {
              setDoc(next);
              setNotes(importNotes);
              setImporting(false);
            }}
          />
        )}
        {notes.length > 0 && (
          <div className="banner banner-info" role="status">
            <p>Imported. What the cards cannot show is kept exactly as it is:</p>
            <ul>
              {notes.map((n) => (
                <li key={n.pointer + n.message}>
                  <code>{n.pointer || "/"}</code> {n.message}
                </li>
              ))}
            </ul>
            {!readOnly && (
              <button type="button" className="link-button" onClick={() => setNotes([])}>
                Dismiss
              </button>
            )}
          </div>
        )}
        {errors.byField.response_schema && (
          <p className="field-error" role="alert">
            {errors.byField.response_schema.join("; ")}
          </p>
        )}
        <div className="builder-layout">
          <fieldset className="plain" disabled={readOnly}>
            <legend className="sr-only">Schema builder</legend>
            <SchemaBuilder doc={doc} onChange={setDoc} issues={issues} readOnly={readOnly} />
          </fieldset>
          <aside className="preview">
            {!readOnly && (
              <p className={`verdict ${errorCount ? "verdict-bad" : "verdict-ok"}`} role="status" data-testid="verdict">
                {checking
                  ? "Checking…"
                  : errorCount
                    ? `${errorCount} problem${errorCount === 1 ? "" : "s"} to fix`
                    : verdict?.valid
                      ? `Valid${warningCount ? ` · ${warningCount} warning${warningCount === 1 ? "" : "s"}` : ""}`
                      : "Not checked yet"}
              </p>
            )}
            <h3 id="preview-title">JSON Schema</h3>
            <JsonBlock value={schema} label="JSON Schema preview" />
          </aside>
        </div>
      </section>

      {confirming && (
        <div className="banner banner-warning" role="alertdialog" aria-labelledby="breaking-title">
          <h3 id="breaking-title">This change can break existing consumers</h3>
          <ul>
            {confirming.map((c) => (
              <li key={c.pointer + c.message}>
                <code>{c.pointer || "/"}</code> {c.message}
              </li>
            ))}
          </ul>
          <div className="actions">
            <button type="button" className="danger" onClick={() => void save(true)}>
              Save anyway
            </button>
            <button type="button" onClick={() => setConfirming(null)}>
              Keep editing
            </button>
          </div>
        </div>
      )}
      {!readOnly && (
        <div className="actions sticky-actions">
          <button type="submit" className="primary" disabled={busy || localCount > 0 || scan.problems.length > 0}>
            {base ? "Save new version" : "Create task"}
          </button>
          {base && breaking.length > 0 && !confirming && (
            <span className="warn-text">
              {breaking.length} breaking change{breaking.length === 1 ? "" : "s"}
            </span>
          )}
          {saved && (
            <span className="ok-text" role="status">
              {saved}
            </span>
          )}
          {base && <ConfirmButton label="Delete" confirmLabel={`Delete ${base.name}?`} onConfirm={() => void remove()} />}
        </div>
      )}
    </form>
  );
}

function ImportPanel({ onImport }: { onImport: (doc: SchemaDoc, notes: ImportNote[]) => void }) {
  const [text, setText] = useState("");
  const [error, setError] = useState("");
  const run = () => {
    try {
      const result = fromJsonSchema(JSON.parse(text));
      setError("");
      onImport(result.doc, result.notes);
    } catch (e) {
      setError(e instanceof ImportError ? e.message : e instanceof SyntaxError ? `not valid JSON: ${e.message}` : String(e));
    }
  };
  return (
    <div className="import-panel">
      <TextArea
        label="JSON Schema to import"
        value={text}
        onChange={setText}
        rows={8}
        monospace
        errors={error ? [error] : undefined}
        hint="It replaces the cards below. Parts without cards are kept as they are, and listed."
      />
      <button type="button" className="primary" onClick={run} disabled={text.trim() === ""}>
        Import
      </button>
    </div>
  );
}
