/** The signed-in session: the API client, the key's identity and role, the live store. */

import { createContext, useContext, useSyncExternalStore } from "react";
import type { Api } from "./api/client";
import type { Me } from "./api/types";
import type { LiveState, LiveStore } from "./live/store";

export interface Session {
  api: Api;
  me: Me;
  store: LiveStore;
  /** Admin keys edit; viewer keys get a read-only console. */
  canEdit: boolean;
  signOut: (reason?: string) => void;
}

export const SessionContext = createContext<Session | null>(null);

export function useSession(): Session {
  const session = useContext(SessionContext);
  if (!session) throw new Error("useSession outside a signed-in console");
  return session;
}

export function useLive(): LiveState {
  const { store } = useSession();
  return useSyncExternalStore(store.subscribe, store.getState);
}

export const KEY_STORAGE = "agentmgr.apiKey";
