import { describe, expect, it } from "vitest";
import type { LiveEvent, Provider } from "../api/types";
import { LiveStore } from "./store";

function provider(id: string, name: string, status = "valid"): Provider {
  return {
    id,
    project: "default",
    name,
    type: "test",
    base_url: "",
    api_key_hint: "",
    config: {},
    validation: { status: status as Provider["validation"]["status"], detail: "", models: ["test"] },
    create_time: "2024-01-01T00:00:00Z",
    update_time: "2024-01-01T00:00:00Z",
    etag: "e",
  };
}

function event(type: string, data: Provider): LiveEvent {
  return { id: `ev-${Math.random()}`, type, subject: `providers/${data.id}`, data: data as never };
}

describe("the live store", () => {
  it("applies created, updated and deleted events", () => {
    const store = new LiveStore();
    store.applyEvent("providers", event("agentmgr.provider.created", provider("p1", "one")));
    store.applyEvent("providers", event("agentmgr.provider.updated", provider("p1", "uno")));
    expect(store.getState().providers.p1?.name).toBe("uno");
    store.applyEvent("providers", event("agentmgr.provider.deleted", provider("p1", "uno")));
    expect(store.getState().providers).toEqual({});
  });

  it("never lets a REST answer that raced with an event overwrite it", () => {
    const store = new LiveStore();
    const since = store.mark(); // a request starts: POST :validate answers "pending"
    store.applyEvent("providers", event("agentmgr.provider.validated", provider("p1", "one", "valid")));
    store.upsert("providers", provider("p1", "one", "pending"), since); // the answer arrives late
    expect(store.getState().providers.p1?.validation.status).toBe("valid");
  });

  it("drops what a reload no longer lists, unless an event brought it meanwhile", () => {
    const store = new LiveStore();
    store.load("providers", [provider("old", "gone"), provider("kept", "kept")], store.mark());
    const since = store.mark();
    store.applyEvent("providers", event("agentmgr.provider.created", provider("new", "fresh")));
    store.load("providers", [provider("kept", "kept")], since);
    expect(Object.keys(store.getState().providers).sort()).toEqual(["kept", "new"]);
  });

  it("notifies subscribers", () => {
    const store = new LiveStore();
    let calls = 0;
    const unsubscribe = store.subscribe(() => (calls += 1));
    store.applyEvent("providers", event("agentmgr.provider.created", provider("p", "p")));
    unsubscribe();
    store.applyEvent("providers", event("agentmgr.provider.updated", provider("p", "q")));
    expect(calls).toBe(1);
  });
});
