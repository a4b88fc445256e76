"""Scale-out on one machine (issue 5): two replicas of every service as separate processes.

Two processes each of provider_svc, agent_svc and the gateway run over one PostgreSQL
and one NATS (see `tests/support/cluster.py` for how they find each other). The tests:

1. an agent changed through one agent_svc replica is rebuilt on the other (the run pins
   the new version and the model sees the new prompt), and a provider changed through
   one provider_svc replica reaches the credential and registry caches of both agent_svc
   replicas — through the events, well before the credential cache's own TTL;
2. with two outbox relays per service, every event is on the stream exactly once and
   every acknowledged write has its event;
3. a WebSocket client on either gateway gets the latest state of every resource
   written through either gateway;
4. each validation job is done by exactly one worker, though both replicas work;
5. SIGKILL of one replica of each service in the middle of a load loses no
   acknowledged write and no event; runs left `running` by the dead agent_svc are
   reaped, started runs it held are redelivered and finished by the survivor.

The crash test comes last: it kills replicas the others use.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import pytest
import websockets
from google.protobuf import field_mask_pb2, struct_pb2
from nats.js import JetStreamContext
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from agentmgr.v1 import agent_pb2 as A
from agentmgr.v1 import agent_pb2_grpc, provider_pb2_grpc, run_pb2_grpc, task_pb2_grpc
from agentmgr.v1 import provider_pb2 as P
from agentmgr.v1 import run_pb2 as R
from agentmgr.v1 import task_pb2 as T
from libs.common.messaging import JOBS_STREAM
from services.agent_svc.repository import outbox as agent_outbox
from services.provider_svc.repository import outbox as provider_outbox
from tests.support.cluster import Cluster, Infrastructure, Replica, scrape
from tests.support.events import read_events
from tests.support.eventually import eventually
from tests.support.grpc_helpers import auth
from tests.support.llm_stub import LlmStub, Slow

pytestmark = pytest.mark.asyncio

OK_SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
STALE_AFTER_S = 10.0
"""RUN_STALE_AFTER_S of the agent_svc replicas: above every agent timeout used here."""

ENV = {
    "provider_svc": {
        # The stub answers from the test's own event loop, which a loaded CI machine can
        # hold up for seconds: a timed-out probe is retried by design, which would read
        # as a job done twice.
        "VALIDATION_TIMEOUT_S": "15",
        "VALIDATION_BACKOFF_S": "0.2",
        "VALIDATION_MAX_ATTEMPTS": "2",
        "VALIDATION_MIN_INTERVAL_S": "0",
        "VALIDATION_RECHECK_INTERVAL_S": "0",
        "VALIDATION_CONCURRENCY": "2",
        "OUTBOX_POLL_INTERVAL_S": "0.2",
    },
    "agent_svc": {
        "RUN_WORKERS": "4",
        "RUN_JOB_ACK_WAIT_S": "3",
        "RUN_STALE_AFTER_S": str(STALE_AFTER_S),
        "RUN_REAPER_INTERVAL_S": "1",
        "OUTBOX_POLL_INTERVAL_S": "0.2",
        "DB_POOL_SIZE": "20",
    },
}


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(value)
    return result


@dataclass
class Clients:
    """Direct gRPC stubs per replica, and an HTTP client per gateway."""

    providers: list[provider_pb2_grpc.ProviderServiceAsyncStub]
    agents: list[agent_pb2_grpc.AgentServiceAsyncStub]
    tasks: list[task_pb2_grpc.TaskServiceAsyncStub]
    runs: list[run_pb2_grpc.RunServiceAsyncStub]
    http: list[httpx.AsyncClient]
    metrics: httpx.AsyncClient


@pytest.fixture(scope="module")
async def cluster(
    tmp_path_factory, database_url, nats_server, keys, encryption_keys
) -> AsyncIterator[Cluster]:
    running = Cluster(
        Infrastructure(
            database_url=database_url,
            nats_url=nats_server.url,
            encryption_keys=encryption_keys,
            service_key=keys.service,
        ),
        log_dir=tmp_path_factory.mktemp("scale-out"),
        env=ENV,
    )
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture(scope="module")
async def clients(cluster: Cluster, keys) -> AsyncIterator[Clients]:
    provider_channels = [grpc.aio.insecure_channel(r.address) for r in cluster.providers]
    agent_channels = [grpc.aio.insecure_channel(r.address) for r in cluster.agents]
    headers = {"authorization": f"Bearer {keys.admin}"}
    http = [httpx.AsyncClient(base_url=g.url, headers=headers, timeout=30) for g in cluster.gateways]
    metrics = httpx.AsyncClient(timeout=5)
    try:
        yield Clients(
            providers=[provider_pb2_grpc.ProviderServiceStub(c) for c in provider_channels],
            agents=[agent_pb2_grpc.AgentServiceStub(c) for c in agent_channels],
            tasks=[task_pb2_grpc.TaskServiceStub(c) for c in agent_channels],
            runs=[run_pb2_grpc.RunServiceStub(c) for c in agent_channels],
            http=http,
            metrics=metrics,
        )
    finally:
        for client in [*http, metrics]:
            await client.aclose()
        for channel in [*provider_channels, *agent_channels]:
            await channel.close(None)


async def _outbox_backlog(database_url: str) -> int:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            total = 0
            for table in (provider_outbox, agent_outbox):
                total += int((await conn.execute(select(func.count()).select_from(table))).scalar_one())
            return total
    finally:
        await engine.dispose()


async def _drained(database_url: str) -> None:
    async def empty() -> None:
        assert await _outbox_backlog(database_url) == 0

    await eventually(empty, timeout=20, interval=0.3, message="both services' outboxes drained")


def _index(events: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Events by (subject, type)."""
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = collections.defaultdict(list)
    for event in events:
        by_key[(event["subject"], event["type"])].append(event)
    return by_key


@dataclass(frozen=True)
class Expected:
    """An acknowledged write: the event it must have produced."""

    subject: str
    type: str
    field: str | None = None
    """A field of `data` that tells this write's event from the resource's others."""
    value: object = None

    def matches(self, event: dict[str, Any]) -> bool:
        return self.field is None or str(event["data"].get(self.field)) == str(self.value)


def _check_exactly_once(events: list[dict[str, Any]], expected: list[Expected]) -> None:
    ids = collections.Counter(e["id"] for e in events)
    duplicated = [i for i, n in ids.items() if n > 1]
    assert not duplicated, f"{len(duplicated)} event ids on the stream more than once"
    assert all(e["_msg_id"] == e["id"] for e in events), "Nats-Msg-Id must be the event id"
    index = _index(events)
    counts = [(x, sum(1 for e in index.get((x.subject, x.type), []) if x.matches(e))) for x in expected]
    missing = [x for x, n in counts if n == 0]
    assert not missing, f"{len(missing)} acknowledged writes without their event, e.g. {missing[:3]}"
    twice = [x for x, n in counts if n > 1]
    assert not twice, f"{len(twice)} writes with more than one event, e.g. {twice[:3]}"


def _chat_text(body: dict[str, object]) -> str:
    return json.dumps(body.get("messages", []))


# --- 1. registry eviction across replicas ---------------------------------------------


async def _registry_evictions(clients: Clients, replica: Replica) -> float | None:
    """The registry's eviction counter on a replica's /metrics, when it exports one."""
    values = await scrape(clients.metrics, replica.metrics_url)
    found = [v for k, v in values.items() if "registry" in k and "evict" in k and "_created" not in k]
    return sum(found) if found else None


async def test_an_agent_changed_through_one_replica_is_rebuilt_on_the_other(
    cluster: Cluster, clients: Clients, keys, llm_stub: LlmStub
):
    md = auth(keys.admin)
    model = _name("scale-evict")
    llm_stub.script(model, [{"ok": True}])
    provider = (
        await clients.providers[0].CreateProvider(
            P.CreateProviderRequest(
                provider=P.Provider(
                    name=_name("evict"), type="openai_compatible", base_url=llm_stub.url("evict-one")
                ),
                api_key=llm_stub.api_key,
            ),
            metadata=md,
        )
    ).provider
    agent = (
        await clients.agents[0].CreateAgent(
            A.CreateAgentRequest(
                agent=A.Agent(
                    name=_name("evict"),
                    provider_id=provider.id,
                    model=model,
                    system_prompt="You are prompt one.",
                )
            ),
            metadata=md,
        )
    ).agent
    task = (
        await clients.tasks[1].CreateTask(
            T.CreateTaskRequest(
                task=T.Task(name=_name("evict"), prompt_template="go", response_schema=_struct(OK_SCHEMA))
            ),
            metadata=md,
        )
    ).task
    run_input = R.RunInput(agent_id=agent.id, task_id=task.id)

    async def run_on(replica: int) -> tuple[R.Run, str, str]:
        """Run through one agent_svc replica: the run, the chat's path and its messages."""
        reply = await clients.runs[replica].CreateRun(R.CreateRunRequest(input=run_input), metadata=md)
        assert reply.run.status == "succeeded", reply.run.error
        chats = [c for c in llm_stub.chats if c.get("model") == model]
        paths = [s.path for s in llm_stub.seen if s.path.endswith("/chat/completions")]
        return reply.run, paths[-1], _chat_text(chats[-1])

    # Both replicas build their registry entry for version 1.
    for replica in (0, 1):
        run, path, text = await run_on(replica)
        assert run.agent_version == 1
        assert path == "/evict-one/v1/chat/completions" and "You are prompt one." in text
    evictions_before = await _registry_evictions(clients, cluster.agents[1])

    updated = (
        await clients.agents[0].UpdateAgent(
            A.UpdateAgentRequest(
                agent=A.Agent(id=agent.id, system_prompt="You are prompt two."),
                update_mask=field_mask_pb2.FieldMask(paths=["system_prompt"]),
            ),
            metadata=md,
        )
    ).agent
    assert updated.version == 2
    run, _, text = await run_on(1)
    assert run.agent_version == 2, "a run through the other replica pins the new version at once"
    assert "You are prompt two." in text and "You are prompt one." not in text
    if evictions_before is not None:  # the registry exports its counters (metrics)

        async def evicted_on_the_other_replica() -> None:
            after = await _registry_evictions(clients, cluster.agents[1])
            assert after is not None and after > evictions_before

        await eventually(evicted_on_the_other_replica, timeout=5)

    # A provider change through the *other* provider_svc replica: both agent_svc replicas
    # cached the credential (for CREDENTIAL_TTL_S, 5 min) and built agents on it; only the
    # event can make them use the new base URL within seconds.
    await clients.providers[1].UpdateProvider(
        P.UpdateProviderRequest(
            provider=P.Provider(id=provider.id, base_url=llm_stub.url("evict-two")),
            update_mask=field_mask_pb2.FieldMask(paths=["base_url"]),
        ),
        metadata=md,
    )
    for replica in (1, 0):

        async def uses_the_new_base_url(replica: int = replica) -> None:
            _, path, _ = await run_on(replica)
            assert path == "/evict-two/v1/chat/completions", path

        await eventually(uses_the_new_base_url, timeout=5, interval=0.2)


# --- 2. two relays, each event once ----------------------------------------------------


async def test_every_event_is_relayed_exactly_once_by_two_relays(
    clients: Clients, keys, js: JetStreamContext, database_url: str
):
    md = auth(keys.admin)
    tag = uuid.uuid4().hex[:6]
    gate = asyncio.Semaphore(16)
    expected: list[Expected] = []

    async def create_provider(i: int) -> P.Provider:
        async with gate:
            reply = await clients.providers[i % 2].CreateProvider(
                P.CreateProviderRequest(provider=P.Provider(name=f"relay-{tag}-{i}", type="test")),
                metadata=md,
            )
        subject = f"providers/{reply.provider.id}"
        expected.append(Expected(subject, "agentmgr.provider.created"))
        expected.append(Expected(subject, "agentmgr.provider.validated"))
        return reply.provider

    providers = await asyncio.gather(*(create_provider(i) for i in range(60)))

    async def update_provider(i: int) -> None:
        async with gate:
            reply = await clients.providers[(i + 1) % 2].UpdateProvider(  # the other replica
                P.UpdateProviderRequest(
                    provider=P.Provider(id=providers[i].id, config=_struct({"n": i}), etag=providers[i].etag),
                    update_mask=field_mask_pb2.FieldMask(paths=["config"]),
                ),
                metadata=md,
            )
        expected.append(
            Expected(
                f"providers/{reply.provider.id}", "agentmgr.provider.updated", "etag", reply.provider.etag
            )
        )

    async def create_agent(i: int) -> A.Agent:
        async with gate:
            reply = await clients.agents[i % 2].CreateAgent(
                A.CreateAgentRequest(
                    agent=A.Agent(name=f"relay-{tag}-{i}", provider_id=providers[i].id, model="test")
                ),
                metadata=md,
            )
        expected.append(Expected(f"agents/{reply.agent.id}", "agentmgr.agent.created"))
        return reply.agent

    async def create_task(i: int) -> T.Task:
        async with gate:
            reply = await clients.tasks[(i + 1) % 2].CreateTask(
                T.CreateTaskRequest(
                    task=T.Task(
                        name=f"relay-{tag}-{i}", prompt_template="go", response_schema=_struct(OK_SCHEMA)
                    )
                ),
                metadata=md,
            )
        expected.append(Expected(f"tasks/{reply.task.id}", "agentmgr.task.created"))
        return reply.task

    results = await asyncio.gather(
        *(update_provider(i) for i in range(30)),
        *(create_agent(i) for i in range(40)),
        *(create_task(i) for i in range(30)),
    )
    agents = [r for r in results if isinstance(r, A.Agent)]
    tasks = [r for r in results if isinstance(r, T.Task)]

    async def update_agent(i: int) -> None:
        async with gate:
            reply = await clients.agents[(i + 1) % 2].UpdateAgent(
                A.UpdateAgentRequest(
                    agent=A.Agent(id=agents[i].id, description=f"v2 {i}", etag=agents[i].etag),
                    update_mask=field_mask_pb2.FieldMask(paths=["description"]),
                ),
                metadata=md,
            )
        assert reply.agent.version == 2
        expected.append(Expected(f"agents/{reply.agent.id}", "agentmgr.agent.updated", "version", 2))

    async def update_task(i: int) -> None:
        async with gate:
            reply = await clients.tasks[i % 2].UpdateTask(
                T.UpdateTaskRequest(
                    task=T.Task(id=tasks[i].id, description=f"v2 {i}", etag=tasks[i].etag),
                    update_mask=field_mask_pb2.FieldMask(paths=["description"]),
                ),
                metadata=md,
            )
        expected.append(Expected(f"tasks/{reply.task.id}", "agentmgr.task.updated", "version", 2))

    await asyncio.gather(*(update_agent(i) for i in range(30)), *(update_task(i) for i in range(20)))
    assert len(expected) == 60 * 2 + 30 + 40 + 30 + 30 + 20

    async def all_relayed() -> list[dict[str, Any]]:
        events = await read_events(js)
        index = _index(events)
        missing = [x for x in expected if not any(x.matches(e) for e in index.get((x.subject, x.type), []))]
        assert not missing, f"{len(missing)} events not on the stream yet"
        return events

    events = await eventually(all_relayed, timeout=30, interval=0.5)
    _check_exactly_once(events, expected)
    await _drained(database_url)


# --- 3. WebSocket clients on either gateway --------------------------------------------


@dataclass
class WsClient:
    """A WebSocket subscriber recording what it receives."""

    url: str
    key: str
    states: dict[str, set[str]] = field(default_factory=lambda: collections.defaultdict(set))
    """Per resource (`providers/prv_…`), the states seen: etag, or a run's status."""
    event_ids: list[str] = field(default_factory=list)

    async def follow(self, ready: asyncio.Event) -> None:
        async with websockets.connect(f"{self.url}?api_key={self.key}", max_size=2**22) as ws:
            await ws.send(
                json.dumps({"type": "subscribe", "topics": ["providers", "agents", "tasks", "runs"]})
            )
            async for raw in ws:
                frame = json.loads(raw)
                if frame["type"] == "subscribed":
                    ready.set()
                elif frame["type"] == "event":
                    event = frame["event"]
                    self.event_ids.append(event["id"])
                    data = event["data"]
                    state = data["status"] if frame["topic"] == "runs" else data["etag"]
                    self.states[event["subject"]].add(str(state))


async def test_a_websocket_client_on_either_gateway_gets_every_event(
    cluster: Cluster, clients: Clients, keys
):
    followers = [
        WsClient(g.url.replace("http://", "ws://") + "/v1/ws", keys.viewer) for g in cluster.gateways
    ]
    readiness = [asyncio.Event() for _ in followers]
    tasks_ = [asyncio.create_task(f.follow(r)) for f, r in zip(followers, readiness, strict=True)]
    try:
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readiness)), 10)
        final: dict[str, str] = {}  # the state each resource ends in, read back after the writes

        async def write_through(g: int) -> None:
            http = clients.http[g]
            tag = uuid.uuid4().hex[:6]
            runner = (await http.post("/v1/providers", json={"name": f"ws-{tag}", "type": "test"})).json()
            agent = (
                await http.post(
                    "/v1/agents", json={"name": f"ws-{tag}", "provider_id": runner["id"], "model": "test"}
                )
            ).json()
            task = (
                await http.post(
                    "/v1/tasks",
                    json={"name": f"ws-{tag}", "prompt_template": "go", "response_schema": OK_SCHEMA},
                )
            ).json()
            touched = [
                f"/v1/providers/{runner['id']}",
                f"/v1/agents/{agent['id']}",
                f"/v1/tasks/{task['id']}",
            ]
            for i in range(8):
                created = await http.post("/v1/providers", json={"name": f"ws-{tag}-{i}", "type": "test"})
                assert created.status_code == 201, created.text
                body = created.json()
                patched = await http.patch(
                    f"/v1/providers/{body['id']}", json={"config": {"i": i}, "etag": body["etag"]}
                )
                assert patched.status_code == 200, patched.text
                touched.append(f"/v1/providers/{body['id']}")
            for i in range(4):
                created = await http.post(
                    "/v1/agents",
                    json={"name": f"ws-{tag}-{i}", "provider_id": runner["id"], "model": "test"},
                )
                assert created.status_code == 201, created.text
                patched = await http.patch(
                    f"/v1/agents/{created.json()['id']}",
                    json={"description": "changed", "etag": created.json()["etag"]},
                )
                assert patched.status_code == 200, patched.text
                touched.append(f"/v1/agents/{created.json()['id']}")
            for _ in range(4):
                ran = await http.post("/v1/runs", json={"agent_id": agent["id"], "task_id": task["id"]})
                assert ran.status_code == 201 and ran.json()["status"] == "succeeded", ran.text
                touched.append(f"/v1/runs/{ran.json()['id']}")
            for path in touched:
                current = (await http.get(path)).json()
                collection = path.split("/")[2]
                final[f"{collection}/{current['id']}"] = (
                    current["status"] if collection == "runs" else current["etag"]
                )

        await asyncio.gather(write_through(0), write_through(1))
        assert len(final) == 2 * (3 + 8 + 4 + 4)

        for follower in followers:

            async def saw_the_final_states(follower: WsClient = follower) -> None:
                missing = [r for r, state in final.items() if state not in follower.states.get(r, set())]
                assert not missing, f"{len(missing)} resources' final state not received, e.g. {missing[:3]}"

            # 10 messages a second per topic: ~30 resources on the busiest topic.
            await eventually(saw_the_final_states, timeout=20, interval=0.2)
            assert len(follower.event_ids) == len(set(follower.event_ids)), "an event was delivered twice"
    finally:
        for task in tasks_:
            task.cancel()
        await asyncio.gather(*tasks_, return_exceptions=True)


# --- 4. validation jobs: exactly one worker each ---------------------------------------


async def test_a_validation_job_is_done_by_exactly_one_worker(
    cluster: Cluster, clients: Clients, keys, llm_stub: LlmStub, js: JetStreamContext, database_url: str
):
    md = auth(keys.admin)
    tag = uuid.uuid4().hex[:6]
    count = 12

    def models_path(i: int) -> str:
        return f"/val-{tag}-{i}/v1/models"

    async def create(i: int) -> P.Provider:
        reply = await clients.providers[i % 2].CreateProvider(
            P.CreateProviderRequest(
                provider=P.Provider(
                    name=f"val-{tag}-{i}", type="openai_compatible", base_url=llm_stub.url(f"val-{tag}-{i}")
                ),
                api_key=llm_stub.api_key,
            ),
            metadata=md,
        )
        return reply.provider

    providers = await asyncio.gather(*(create(i) for i in range(count)))

    def hits() -> list[int]:
        seen = collections.Counter(s.path for s in llm_stub.seen)
        return [seen[models_path(i)] for i in range(count)]

    async def validated_events() -> list[int]:
        events = await read_events(js, subject="agentmgr.events.providers.validated")
        per_subject = collections.Counter(e["subject"] for e in events)
        return [per_subject[f"providers/{p.id}"] for p in providers]

    async def settled(jobs: int) -> None:
        """Every provider validated `jobs` times, and nothing more in the queue or in flight."""
        assert min(hits()) >= jobs, hits()
        assert min(await validated_events()) >= jobs
        assert await _outbox_backlog(database_url) == 0
        info = await js.consumer_info(JOBS_STREAM, "provider-validation")
        assert info.num_pending == 0 and info.num_ack_pending == 0, info

    # One job per provider on create (replica i % 2 enqueued it).
    def attempts() -> list[dict[str, Any]]:
        """Every worker's provider_validated log line for these providers."""
        ids = {p.id for p in providers}
        return [
            {"replica": n, **line}
            for n, replica in enumerate(cluster.providers)
            for line in map(json.loads, _lines_with(replica.process.log_text(), "provider_validated"))
            if line.get("provider_id") in ids
        ]

    await eventually(lambda: settled(1), timeout=40, interval=0.2)
    assert hits() == [1] * count, f"each job called the provider exactly once: {attempts()}"
    assert await validated_events() == [1] * count, "each job stored one outcome"

    # A second job per provider, requested through the other replica.
    await asyncio.gather(
        *(
            clients.providers[(i + 1) % 2].ValidateProvider(P.ValidateProviderRequest(id=p.id), metadata=md)
            for i, p in enumerate(providers)
        )
    )
    await eventually(lambda: settled(2), timeout=40, interval=0.2)
    assert hits() == [2] * count, attempts()
    assert await validated_events() == [2] * count
    for provider in providers:
        got = await clients.providers[0].GetProvider(P.GetProviderRequest(id=provider.id), metadata=md)
        assert got.provider.validation.status == "valid"

    # Both workers took jobs (otherwise "exactly one" would prove little).
    per_replica = collections.Counter(line["replica"] for line in attempts())
    assert sum(per_replica.values()) == 2 * count and len(per_replica) == 2, per_replica


def _lines_with(log: str, word: str) -> list[str]:
    return [line for line in log.splitlines() if word in line]


# --- 5. SIGKILL one replica of each service mid-load -----------------------------------


RETRYABLE = (502, 503, 504)


@dataclass
class Load:
    """Clients that write through both gateways and retry on the other when one fails."""

    http: list[httpx.AsyncClient]
    successes: int = 0
    expected: list[Expected] = field(default_factory=list)
    created: dict[str, str] = field(default_factory=dict)
    """Acknowledged creates: REST path → name."""
    updated: dict[str, str] = field(default_factory=dict)
    """Acknowledged updates: REST path → the update_time the response carried (latest)."""
    runs: dict[str, str] = field(default_factory=dict)
    """Acknowledged runs: id → status in the response."""
    background: set[str] = field(default_factory=set)

    async def send(
        self, method: str, path: str, body: dict[str, Any], *, prefer: int, ok: int
    ) -> dict[str, Any] | None:
        """The response body of the first success; None when a retry found its etag stale."""
        retried = False
        for attempt in range(80):
            http = self.http[(prefer + attempt) % len(self.http)]
            try:
                response = await http.request(method, path, json=body)
            except httpx.TransportError:
                retried = True
                await asyncio.sleep(0.05)
                continue
            if response.status_code == ok:
                self.successes += 1
                return response.json()
            if response.status_code in RETRYABLE:
                retried = True
                await asyncio.sleep(0.05)
                continue
            if response.status_code == 409 and retried and method == "PATCH":
                return None  # the attempt that failed may have committed: not acknowledged
            raise AssertionError(f"{method} {path}: {response.status_code} {response.text}")
        raise AssertionError(f"{method} {path}: no gateway answered")


async def _runs_in(http: httpx.AsyncClient, agent_id: str, status: str) -> list[dict[str, Any]]:
    response = await http.get("/v1/runs", params={"agent_id": agent_id, "status": status, "page_size": 1000})
    assert response.status_code == 200, response.text
    return response.json()["runs"]


async def _all(http: httpx.AsyncClient, collection: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    token = ""
    while True:
        response = await http.get(f"/v1/{collection}", params={"page_size": 1000, "page_token": token})
        assert response.status_code == 200, response.text
        items += response.json()[collection]
        token = response.json()["next_page_token"]
        if not token:
            return items


async def test_killing_one_replica_of_each_service_mid_load_loses_nothing(
    cluster: Cluster, clients: Clients, keys, llm_stub: LlmStub, js: JetStreamContext, database_url: str
):
    md = auth(keys.admin)
    tag = uuid.uuid4().hex[:6]
    http = clients.http
    fast, slow, doomed = f"fast-{tag}", f"slow-{tag}", f"doomed-{tag}"
    llm_stub.script(fast, [Slow(0.2, {"ok": True})])
    llm_stub.script(slow, [Slow(2.5, {"ok": True})])
    llm_stub.script(doomed, [Slow(6.0, {"ok": True})])
    stub_provider = (
        await http[0].post(
            "/v1/providers",
            json={
                "name": f"kill-{tag}",
                "type": "openai_compatible",
                "base_url": llm_stub.url(),
                "api_key": llm_stub.api_key,
            },
        )
    ).json()
    test_provider = (
        await http[0].post("/v1/providers", json={"name": f"kill-t-{tag}", "type": "test"})
    ).json()
    agents = {}
    for model in (fast, slow, doomed):
        created = await http[0].post(
            "/v1/agents",
            json={
                "name": model,
                "provider_id": stub_provider["id"],
                "model": model,
                "model_settings": {"timeout_s": 8.0},
            },
        )
        assert created.status_code == 201, created.text
        agents[model] = created.json()["id"]
    task = (
        await http[1].post(
            "/v1/tasks", json={"name": f"kill-{tag}", "prompt_template": "go", "response_schema": OK_SCHEMA}
        )
    ).json()
    load = Load(http=http)

    done = asyncio.Event()

    async def worker(w: int) -> None:
        my_providers: list[dict[str, Any]] = []
        my_agents: list[dict[str, Any]] = []
        kinds = ("provider", "provider_update", "agent", "task", "run", "background", "agent_update")
        for k in range(200):  # until the chaos says done; the bound only guards against a hang
            if done.is_set():
                return
            kind, prefer, name = kinds[(w + k) % len(kinds)], (w + k) % 2, f"load-{tag}-{w}-{k}"
            rid = uuid.uuid4().hex
            if kind == "provider" or (kind == "provider_update" and not my_providers):
                body = await load.send(
                    "POST",
                    "/v1/providers",
                    {"name": name, "type": "test", "request_id": rid},
                    prefer=prefer,
                    ok=201,
                )
                assert body is not None
                my_providers.append(body)
                load.created[f"/v1/providers/{body['id']}"] = name
                load.expected.append(Expected(f"providers/{body['id']}", "agentmgr.provider.created"))
            elif kind == "provider_update":
                target = my_providers[-1]
                body = await load.send(
                    "PATCH",
                    f"/v1/providers/{target['id']}",
                    {"config": {"k": k}, "etag": target["etag"]},
                    prefer=prefer,
                    ok=200,
                )
                if body is not None:
                    my_providers[-1] = body
                    load.updated[f"/v1/providers/{body['id']}"] = body["update_time"]
                    load.expected.append(
                        Expected(f"providers/{body['id']}", "agentmgr.provider.updated", "etag", body["etag"])
                    )
            elif kind == "agent" or (kind == "agent_update" and not my_agents):
                body = await load.send(
                    "POST",
                    "/v1/agents",
                    {"name": name, "provider_id": test_provider["id"], "model": "test", "request_id": rid},
                    prefer=prefer,
                    ok=201,
                )
                assert body is not None
                my_agents.append(body)
                load.created[f"/v1/agents/{body['id']}"] = name
                load.expected.append(Expected(f"agents/{body['id']}", "agentmgr.agent.created"))
            elif kind == "agent_update":
                target = my_agents[-1]
                body = await load.send(
                    "PATCH",
                    f"/v1/agents/{target['id']}",
                    {"description": f"k={k}", "etag": target["etag"]},
                    prefer=prefer,
                    ok=200,
                )
                if body is not None:
                    my_agents[-1] = body
                    load.updated[f"/v1/agents/{body['id']}"] = body["update_time"]
                    load.expected.append(
                        Expected(f"agents/{body['id']}", "agentmgr.agent.updated", "version", body["version"])
                    )
            elif kind == "task":
                body = await load.send(
                    "POST",
                    "/v1/tasks",
                    {"name": name, "prompt_template": "go", "response_schema": OK_SCHEMA, "request_id": rid},
                    prefer=prefer,
                    ok=201,
                )
                assert body is not None
                load.created[f"/v1/tasks/{body['id']}"] = name
                load.expected.append(Expected(f"tasks/{body['id']}", "agentmgr.task.created"))
            else:
                wait = kind == "run"
                body = await load.send(
                    "POST",
                    "/v1/runs",
                    {"agent_id": agents[fast], "task_id": task["id"], "wait": wait, "request_id": rid},
                    prefer=prefer,
                    ok=201 if wait else 202,
                )
                assert body is not None
                load.runs[body["id"]] = body["status"]
                if not wait:
                    load.background.add(body["id"])

    async def start_slow_runs() -> tuple[list[str], list[asyncio.Task[Any]]]:
        """Runs that will be in progress at the kill: started ones and waited-for ones on agent_svc-1."""
        started = []
        for i in range(8):
            body = await load.send(
                "POST",
                "/v1/runs",
                {
                    "agent_id": agents[slow],
                    "task_id": task["id"],
                    "wait": False,
                    "request_id": uuid.uuid4().hex,
                },
                prefer=i % 2,
                ok=202,
            )
            assert body is not None
            started.append(body["id"])
            load.runs[body["id"]] = body["status"]
            load.background.add(body["id"])
        run_input = R.RunInput(agent_id=agents[doomed], task_id=task["id"])

        async def waited_for() -> R.CreateRunResponse:
            # Straight to agent_svc-1, and no retry: nobody will ask for these again.
            return await clients.runs[1].CreateRun(
                R.CreateRunRequest(input=run_input), metadata=md, timeout=30
            )

        return started, [asyncio.create_task(waited_for()) for _ in range(3)]

    async def chaos() -> int:
        async def load_under_way() -> None:
            assert load.successes >= 80

        await eventually(load_under_way, timeout=30)
        started, waited = await start_slow_runs()

        async def both_workers_and_the_waiters_busy() -> None:
            # RUN_WORKERS=4 per replica: 5 of the 8 running means agent_svc-1 holds some.
            running = {r["id"] for r in await _runs_in(http[1], agents[slow], "running")}
            assert len(running & set(started)) >= 5, len(running)
            assert len(await _runs_in(http[1], agents[doomed], "running")) == 3

        await eventually(both_workers_and_the_waiters_busy, timeout=15, interval=0.1)
        for replica in (cluster.gateways[0], cluster.providers[0], cluster.agents[1]):
            replica.kill()
        at_kill = load.successes
        outcomes = await asyncio.gather(*waited, return_exceptions=True)
        assert all(isinstance(o, grpc.aio.AioRpcError) for o in outcomes), outcomes

        async def survivors_took_over() -> None:
            assert load.successes >= at_kill + 120

        await eventually(survivors_took_over, timeout=30)
        done.set()
        return at_kill

    chaos_task = asyncio.create_task(chaos())
    await asyncio.gather(chaos_task, *(worker(w) for w in range(10)))
    assert load.successes >= chaos_task.result() + 120
    survivor = http[1]

    # No run stays running or queued: interrupted waited-for runs are reaped, started
    # runs the dead replica held are redelivered to the survivor and finish.
    async def nothing_in_progress() -> None:
        for agent_id in agents.values():
            for status in ("running", "queued"):
                assert not await _runs_in(survivor, agent_id, status), (agent_id, status)

    await eventually(nothing_in_progress, timeout=STALE_AFTER_S + 15, interval=0.5)
    reaped = await _runs_in(survivor, agents[doomed], "failed")
    assert len(reaped) == 3 and all("interrupted" in r["error"]["message"] for r in reaped), reaped
    for run_id, status in load.runs.items():
        got = await survivor.get(f"/v1/runs/{run_id}")
        assert got.status_code == 200, got.text
        assert got.json()["status"] == "succeeded", got.json()
        if run_id not in load.background:
            assert status == "succeeded"

    # Every acknowledged write is readable through the survivors.
    for path, name in load.created.items():
        got = await survivor.get(path)
        assert got.status_code == 200 and got.json()["name"] == name, (path, got.text)
    for path, update_time in load.updated.items():
        got = await survivor.get(path)
        assert got.status_code == 200, got.text
        assert dt.datetime.fromisoformat(got.json()["update_time"]) >= dt.datetime.fromisoformat(update_time)

    # ... and has its event, once; every resource that exists (acknowledged or not) has
    # its created event; every run's final state is on the stream.
    await _drained(database_url)
    existing = [
        (f"{collection}/{item['id']}", f"agentmgr.{collection[:-1]}.created")
        for collection in ("providers", "agents", "tasks")
        for item in await _all(survivor, collection)
    ]
    finished = []
    for agent_id in agents.values():
        for status in ("succeeded", "failed"):
            finished += [
                Expected(f"runs/{r['id']}", f"agentmgr.run.{status}")
                for r in await _runs_in(survivor, agent_id, status)
            ]

    async def on_the_stream() -> list[dict[str, Any]]:
        events = await read_events(js)
        index = _index(events)
        lost = [key for key in existing if key not in index]
        assert not lost, f"{len(lost)} resources without their created event, e.g. {lost[:3]}"
        unfinished = [x for x in finished if (x.subject, x.type) not in index]
        assert not unfinished, f"{len(unfinished)} runs without their final event, e.g. {unfinished[:3]}"
        return events

    events = await eventually(on_the_stream, timeout=20, interval=0.5)
    _check_exactly_once(events, load.expected)

    # The started runs agent_svc-1 held were executed again by agent_svc-0.
    index = _index(events)
    redelivered = [
        r for r in load.background if len(index.get((f"runs/{r}", "agentmgr.run.running"), [])) > 1
    ]
    assert redelivered, "no started run was taken over from the killed replica"
    ended = collections.Counter(
        e["subject"] for e in events if e["type"] in ("agentmgr.run.succeeded", "agentmgr.run.failed")
    )
    twice = [x.subject for x in finished if ended[x.subject] != 1]
    assert not twice, f"{len(twice)} runs finished more than once, e.g. {twice[:3]}"
