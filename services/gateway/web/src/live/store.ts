/**
 * The console's copy of the resources, kept current by WebSocket events.
 *
 * Lists are loaded over REST once the socket is subscribed (and again after every
 * reconnect, since events may have been missed meanwhile); events then replace or
 * remove single resources. A REST answer that raced with an event never overwrites
 * the event's newer state: every write carries the sequence number it started at, and
 * loses to any event for the same resource that arrived after that.
 */

import type { LiveEvent, ResourceOf, Topic } from "../api/types";

export type Connection = "connecting" | "live" | "reconnecting" | "revoked";

export interface LiveState {
  providers: Record<string, ResourceOf["providers"]>;
  agents: Record<string, ResourceOf["agents"]>;
  tasks: Record<string, ResourceOf["tasks"]>;
  runs: Record<string, ResourceOf["runs"]>;
  /** The lists have been loaded at least once. */
  loaded: boolean;
  connection: Connection;
  /** Events applied so far (lets a test or a user see that updates arrive). */
  events: number;
}

/** How many runs to keep in memory; older ones are fetched when asked for. */
export const RUN_WINDOW = 500;

export class LiveStore {
  private state: LiveState = {
    providers: {},
    agents: {},
    tasks: {},
    runs: {},
    loaded: false,
    connection: "connecting",
    events: 0,
  };
  private readonly listeners = new Set<() => void>();
  private seq = 0;
  private readonly touched: Record<Topic, Map<string, number>> = {
    providers: new Map(),
    agents: new Map(),
    tasks: new Map(),
    runs: new Map(),
  };

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  getState = (): LiveState => this.state;

  private set(next: Partial<LiveState>) {
    this.state = { ...this.state, ...next };
    for (const listener of this.listeners) listener();
  }

  /** A point in time: writes started now lose to events arriving later. */
  mark(): number {
    return this.seq;
  }

  private newerEvent(topic: Topic, id: string, since: number): boolean {
    return (this.touched[topic].get(id) ?? -1) > since;
  }

  setConnection(connection: Connection) {
    if (connection !== this.state.connection) this.set({ connection });
  }

  /** A resource from a REST answer (created, updated, fetched). */
  upsert<T extends Topic>(topic: T, item: ResourceOf[T], since: number = this.seq) {
    if (this.newerEvent(topic, item.id, since)) return;
    const collection = { ...this.state[topic], [item.id]: item } as LiveState[T];
    this.set({ [topic]: topic === "runs" ? trimRuns(collection as LiveState["runs"]) : collection } as Partial<LiveState>);
  }

  remove(topic: Topic, id: string) {
    if (!(id in this.state[topic])) return;
    const collection = { ...this.state[topic] };
    delete collection[id];
    this.set({ [topic]: collection } as Partial<LiveState>);
  }

  /**
   * A fresh list. For providers, agents and tasks it is the whole collection: what is
   * missing was deleted (unless an event says otherwise). Runs are merged (a page).
   */
  load<T extends Topic>(topic: T, items: ResourceOf[T][], since: number) {
    const current = this.state[topic] as Record<string, ResourceOf[T]>;
    const next: Record<string, ResourceOf[T]> = {};
    if (topic === "runs") Object.assign(next, current);
    for (const [id, item] of Object.entries(current)) {
      if (this.newerEvent(topic, id, since)) next[id] = item;
    }
    for (const item of items) {
      if (!this.newerEvent(topic, item.id, since)) next[item.id] = item;
    }
    const collection = topic === "runs" ? trimRuns(next as LiveState["runs"]) : next;
    this.set({ [topic]: collection } as Partial<LiveState>);
  }

  markLoaded() {
    if (!this.state.loaded) this.set({ loaded: true });
  }

  /** One `{"type": "event"}` frame's event. */
  applyEvent(topic: Topic, event: LiveEvent) {
    const data = event.data as unknown as ResourceOf[Topic] | undefined;
    const id = (data && typeof data.id === "string" && data.id) || event.subject.split("/")[1] || "";
    if (!id) return;
    this.seq += 1;
    this.touched[topic].set(id, this.seq);
    if (event.type.endsWith(".deleted")) {
      this.remove(topic, id);
    } else if (data) {
      const collection = { ...this.state[topic], [id]: data };
      this.set({
        [topic]: topic === "runs" ? trimRuns(collection as LiveState["runs"]) : collection,
        events: this.state.events + 1,
      } as Partial<LiveState>);
      return;
    }
    this.set({ events: this.state.events + 1 });
  }
}

function trimRuns(runs: LiveState["runs"]): LiveState["runs"] {
  const ids = Object.keys(runs);
  if (ids.length <= RUN_WINDOW) return runs;
  const keep = Object.values(runs)
    .sort((a, b) => b.create_time.localeCompare(a.create_time))
    .slice(0, RUN_WINDOW);
  return Object.fromEntries(keep.map((r) => [r.id, r]));
}
