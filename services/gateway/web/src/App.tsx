/** The console: sign-in, then the shell (navigation, live status) around the pages. */

import { useCallback, useEffect, useState, type FormEvent } from "react";
import { Api, ApiError } from "./api/client";
import { ErrorBoundary } from "./components/ErrorBoundary";
import { ErrorBanner, formErrors, TextField } from "./components/forms";
import { LiveConnection } from "./live/socket";
import { LiveStore, type Connection } from "./live/store";
import { AgentPage, AgentsPage } from "./pages/Agents";
import { Dashboard } from "./pages/Dashboard";
import { Playground } from "./pages/Playground";
import { ProviderPage, ProvidersPage } from "./pages/Providers";
import { RunPage, RunsPage } from "./pages/Runs";
import { TaskPage, TasksPage } from "./pages/Tasks";
import { Link, match, useLocation } from "./router";
import { KEY_STORAGE, SessionContext, useLive, useSession, type Session } from "./session";

export function App() {
  const [session, setSession] = useState<Session | null>(null);
  const [restoring, setRestoring] = useState(() => Boolean(sessionStorage.getItem(KEY_STORAGE)));
  const [notice, setNotice] = useState("");

  const open = useCallback(
    (api: Api, me: Session["me"]) => {
      const store = new LiveStore();
      const next: Session = {
        api,
        me,
        store,
        canEdit: me.role === "admin",
        signOut: (reason?: string) => {
          sessionStorage.removeItem(KEY_STORAGE);
          setSession(null);
          setNotice(reason ?? "");
        },
      };
      setSession(next);
    },
    [],
  );

  useEffect(() => {
    const key = sessionStorage.getItem(KEY_STORAGE);
    if (!key) return;
    const api = new Api(key);
    api
      .me()
      .then((me) => open(api, me))
      .catch((error: unknown) => {
        if (error instanceof ApiError && error.status === 401) sessionStorage.removeItem(KEY_STORAGE);
        setNotice(error instanceof Error ? error.message : String(error));
      })
      .finally(() => setRestoring(false));
  }, [open]);

  useEffect(() => {
    if (!session) return;
    const connection = new LiveConnection(session.api, session.store, () =>
      session.signOut("Your API key was revoked; sign in with another key."),
    );
    connection.start();
    return () => connection.stop();
  }, [session]);

  if (restoring) return <p className="loading">Signing in…</p>;
  if (!session) {
    return (
      <SignIn
        notice={notice}
        onSignedIn={(api, me) => {
          sessionStorage.setItem(KEY_STORAGE, api.key);
          setNotice("");
          open(api, me);
        }}
      />
    );
  }
  return (
    <SessionContext.Provider value={session}>
      <Shell />
    </SessionContext.Provider>
  );
}

function SignIn({ notice, onSignedIn }: { notice: string; onSignedIn: (api: Api, me: Session["me"]) => void }) {
  const [key, setKey] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    const api = new Api(key.trim());
    try {
      onSignedIn(api, await api.me());
    } catch (e) {
      setError(
        e instanceof ApiError && e.status === 401 ? new Error("This API key is unknown or revoked.") : e,
      );
    } finally {
      setBusy(false);
    }
  };
  return (
    <main className="signin">
      <form className="card signin-card" onSubmit={submit} aria-labelledby="signin-title">
        <h1 id="signin-title">agentmgr console</h1>
        <p className="muted">
          Sign in with an API key. <code>make run</code> prints an admin key; <code>agentmgr keys create</code> makes
          more. The key stays in this browser tab only.
        </p>
        {notice && (
          <div className="banner banner-info" role="status">
            {notice}
          </div>
        )}
        <ErrorBanner errors={formErrors(error, [])} />
        <TextField
          label="API key"
          type="password"
          value={key}
          onChange={setKey}
          autoFocus
          autoComplete="current-password"
          placeholder="amk_…"
          required
        />
        <button type="submit" className="primary" disabled={busy || key.trim() === ""}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}

const NAV = [
  { to: "/", label: "Dashboard", edit: false },
  { to: "/providers", label: "Providers", edit: false },
  { to: "/agents", label: "Agents", edit: false },
  { to: "/tasks", label: "Tasks", edit: false },
  { to: "/runs", label: "Runs", edit: false },
  { to: "/playground", label: "Playground", edit: true },
];

const CONNECTION_LABELS: Record<Connection, string> = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  revoked: "Key revoked",
};

function Shell() {
  const { me, canEdit, signOut } = useSession();
  const { connection } = useLive();
  const path = useLocation();
  const section = "/" + (path.split("?")[0] ?? "").split("/")[1];
  return (
    <div className="shell">
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <Link to="/" className="brand">
          agentmgr
        </Link>
        <nav aria-label="Main">
          <ul>
            {NAV.filter((n) => canEdit || !n.edit).map((n) => (
              <li key={n.to}>
                <Link to={n.to} aria-current={section === n.to ? "page" : undefined}>
                  {n.label}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <div className="topbar-right">
          <span className={`live live-${connection}`} role="status" aria-live="polite" data-testid="connection">
            {CONNECTION_LABELS[connection]}
          </span>
          <span className="identity" title={`key ${me.key_id}`}>
            {me.role}
            {me.project !== "*" && ` · ${me.project}`}
            {!canEdit && <span className="readonly-tag"> (read-only)</span>}
          </span>
          <button type="button" className="link-button" onClick={() => signOut()}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        <ErrorBoundary key={path.split("?")[0]}>
          <Routes path={path} />
        </ErrorBoundary>
      </main>
    </div>
  );
}

function Routes({ path }: { path: string }) {
  const { canEdit } = useSession();
  let params: Record<string, string> | null;
  if (match("/", path)) return <Dashboard />;
  if (match("/providers", path)) return <ProvidersPage />;
  if ((params = match("/providers/:id", path))) return <ProviderPage id={params.id ?? ""} />;
  if (match("/agents", path)) return <AgentsPage />;
  if ((params = match("/agents/:id", path))) return <AgentPage id={params.id ?? ""} />;
  if (match("/tasks", path)) return <TasksPage />;
  if ((params = match("/tasks/:id", path))) return <TaskPage id={params.id ?? ""} />;
  if (match("/runs", path)) return <RunsPage />;
  if ((params = match("/runs/:id", path))) return <RunPage id={params.id ?? ""} />;
  if (match("/playground", path) && canEdit) return <Playground />;
  return (
    <section className="page">
      <h1>Not found</h1>
      <p>
        Nothing lives at <code>{path}</code>. <Link to="/">Back to the dashboard</Link>.
      </p>
    </section>
  );
}
