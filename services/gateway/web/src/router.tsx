/** A few lines of client-side routing (the gateway serves index.html for every console path). */

import { useSyncExternalStore, type AnchorHTMLAttributes, type MouseEvent } from "react";

const listeners = new Set<() => void>();

function subscribe(listener: () => void) {
  listeners.add(listener);
  window.addEventListener("popstate", listener);
  return () => {
    listeners.delete(listener);
    window.removeEventListener("popstate", listener);
  };
}

function location(): string {
  return window.location.pathname + window.location.search;
}

export function navigate(to: string, { replace = false } = {}) {
  if (to === location()) return;
  if (replace) window.history.replaceState(null, "", to);
  else window.history.pushState(null, "", to);
  for (const listener of listeners) listener();
  window.scrollTo?.(0, 0);
}

/** The current path and query (`/tasks/tsk_1?version=2`). */
export function useLocation(): string {
  return useSyncExternalStore(subscribe, location, () => "/");
}

/** `match("/tasks/:id", "/tasks/tsk_1")` → `{id: "tsk_1"}`; null when it does not match. */
export function match(pattern: string, path: string): Record<string, string> | null {
  const pathname = path.split("?")[0] ?? "";
  const want = pattern.split("/").filter(Boolean);
  const got = pathname.split("/").filter(Boolean);
  if (want.length !== got.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < want.length; i += 1) {
    const w = want[i] ?? "";
    const g = got[i] ?? "";
    if (w.startsWith(":")) params[w.slice(1)] = decodeURIComponent(g);
    else if (w !== g) return null;
  }
  return params;
}

export function queryParam(path: string, name: string): string | null {
  return new URLSearchParams(path.split("?")[1] ?? "").get(name);
}

type LinkProps = AnchorHTMLAttributes<HTMLAnchorElement> & { to: string };

export function Link({ to, onClick, ...rest }: LinkProps) {
  const handle = (event: MouseEvent<HTMLAnchorElement>) => {
    onClick?.(event);
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) {
      return;
    }
    event.preventDefault();
    navigate(to);
  };
  return <a href={to} onClick={handle} {...rest} />;
}
