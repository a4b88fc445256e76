/**
 * `GET /v1/ws`: subscribe to every topic, apply events to the store, reconnect with
 * exponential backoff (and jitter) when the connection drops, and reload the lists
 * after each (re)subscription so nothing missed while offline stays stale.
 */

import { ApiError, type Api } from "../api/client";
import { TOPICS, type LiveEvent, type Topic } from "../api/types";
import type { LiveStore } from "./store";

const CLOSE_REVOKED = 4001;
const PING_EVERY_MS = 20_000;
const SILENCE_LIMIT_MS = 50_000;
const MAX_BACKOFF_MS = 15_000;

export function backoffMs(attempt: number, random: () => number = Math.random): number {
  const base = Math.min(MAX_BACKOFF_MS, 500 * 2 ** attempt);
  return Math.round(base * (0.5 + random() / 2));
}

export class LiveConnection {
  private socket: WebSocket | null = null;
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private pinger: ReturnType<typeof setInterval> | null = null;
  private lastMessageAt = 0;
  private stopped = false;

  constructor(
    private readonly api: Api,
    private readonly store: LiveStore,
    private readonly onRevoked: () => void,
  ) {}

  start() {
    this.stopped = false;
    this.connect();
    // Do not wait for the socket to show something; the subscription reloads again.
    void this.reload();
  }

  stop() {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.pinger) clearInterval(this.pinger);
    this.socket?.close(1000, "signed out");
    this.socket = null;
  }

  private url(): string {
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    return `${scheme}://${window.location.host}/v1/ws?api_key=${encodeURIComponent(this.api.key)}`;
  }

  private connect() {
    if (this.stopped) return;
    const socket = new WebSocket(this.url());
    this.socket = socket;
    socket.onopen = () => {
      this.lastMessageAt = Date.now();
      socket.send(JSON.stringify({ type: "subscribe", topics: TOPICS }));
      this.pinger = setInterval(() => {
        if (Date.now() - this.lastMessageAt > SILENCE_LIMIT_MS) socket.close(4000, "no answer");
        else socket.send(JSON.stringify({ type: "ping" }));
      }, PING_EVERY_MS);
    };
    socket.onmessage = (message) => {
      this.lastMessageAt = Date.now();
      let frame: { type?: string; topic?: Topic; event?: LiveEvent };
      try {
        frame = JSON.parse(String(message.data));
      } catch {
        return;
      }
      if (frame.type === "subscribed") {
        this.attempt = 0;
        this.store.setConnection("live");
        void this.reload();
      } else if (frame.type === "event" && frame.topic && frame.event) {
        this.store.applyEvent(frame.topic, frame.event);
      }
    };
    socket.onclose = (event) => {
      if (this.pinger) clearInterval(this.pinger);
      this.pinger = null;
      if (this.socket !== socket || this.stopped) return;
      this.socket = null;
      if (event.code === CLOSE_REVOKED) {
        this.store.setConnection("revoked");
        this.onRevoked();
        return;
      }
      this.store.setConnection("reconnecting");
      this.schedule();
    };
  }

  private schedule() {
    const delay = backoffMs(this.attempt);
    this.attempt += 1;
    this.timer = setTimeout(() => void this.retry(), delay);
  }

  private async retry() {
    if (this.stopped) return;
    // A refused upgrade looks like any other drop; ask REST whether the key still works.
    if (this.attempt >= 2) {
      try {
        await this.api.me();
      } catch (error) {
        if (error instanceof ApiError && error.status === 401) {
          this.store.setConnection("revoked");
          this.onRevoked();
          return;
        }
      }
    }
    this.connect();
  }

  /** Reload every list (after a (re)subscription). */
  async reload() {
    const since = this.store.mark();
    const results = await Promise.allSettled([
      this.api.providers().then((items) => this.store.load("providers", items, since)),
      this.api.agents().then((items) => this.store.load("agents", items, since)),
      this.api.tasks().then((items) => this.store.load("tasks", items, since)),
      this.api.runs({}, 100).then((page) => this.store.load("runs", page.items, since)),
    ]);
    if (results.some((r) => r.status === "fulfilled")) this.store.markLoaded();
  }
}
