"""Prometheus metrics of every service after real activity (docs/operations.md).

The services run as processes (a metrics registry is process-wide), talking to real
PostgreSQL and NATS; the model is the local OpenAI-compatible stub (a real LLM cannot
run here).
"""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from tests.support.eventually import eventually
from tests.support.llm_stub import Http
from tests.support.observability import Metrics, System, scrape

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "score": {"type": "integer"}},
    "required": ["title", "score"],
}
ANSWER = {"title": "A fine piece", "score": 7}
# Ids look like `run_01J…`: no label may carry one (label cardinality must stay bounded).
_ID = re.compile(r"^[a-z]{2,4}_[0-9A-Z]{26}$")


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
async def system(tmp_path_factory, database_url, nats_server, encryption_keys, keys):
    running = System(
        database_url=database_url,
        nats_url=nats_server.url,
        encryption_keys=encryption_keys,
        service_key=keys.service,
        log_dir=tmp_path_factory.mktemp("metrics-logs"),
    )
    try:
        await running.start()
        yield running
    finally:
        await running.stop()
        running.kill()


@pytest.fixture(scope="module")
async def http(system, keys):
    async with httpx.AsyncClient(
        base_url=system.url, timeout=30, headers={"authorization": f"Bearer {keys.admin}"}
    ) as client:
        yield client


async def _post(http: httpx.AsyncClient, path: str, body: dict, status: int = 201) -> dict:
    response = await http.post(path, json=body)
    assert response.status_code == status, response.text
    return response.json()


def _no_id_labels(metrics: Metrics) -> None:
    for name, labels in metrics.labels():
        if name.startswith("agentmgr_"):
            assert not any(_ID.match(v) for v in labels.values()), (name, labels)


async def test_every_service_reports_its_work(system, http, llm_stub):
    model, failing = _name("m"), _name("m")
    llm_stub.script(model, [ANSWER])
    llm_stub.script(failing, [Http(429, retry_after="1")])
    provider = await _post(
        http,
        "/v1/providers",
        {
            "name": _name("p"),
            "type": "openai_compatible",
            "base_url": llm_stub.url(),
            "api_key": llm_stub.api_key,
        },
    )

    # provider_svc: the validation job is consumed and its outcome counted.
    async def validated() -> Metrics:
        got = (await http.get(f"/v1/providers/{provider['id']}")).json()
        assert got["validation"]["status"] == "valid", got["validation"]
        metrics = await scrape(system.metrics_url("provider_svc"))
        assert metrics.value("agentmgr_provider_validations_total", outcome="valid", final="true") >= 1
        return metrics

    await eventually(validated, timeout=30)

    agent = await _post(
        http, "/v1/agents", {"name": _name("a"), "provider_id": provider["id"], "model": model}
    )
    bad_agent = await _post(
        http, "/v1/agents", {"name": _name("a"), "provider_id": provider["id"], "model": failing}
    )
    task = await _post(
        http,
        "/v1/tasks",
        {"name": _name("t"), "response_schema": SCHEMA, "prompt_template": "Rate {thing}."},
    )
    run = {"agent_id": agent["id"], "task_id": task["id"], "variables": {"thing": "tea"}}
    before = await scrape(system.metrics_url("agent_svc"))
    assert before.value("agentmgr_agent_registry_misses_total") == 0
    assert before.value("agentmgr_agent_registry_entries") == 0

    first = await _post(http, "/v1/runs", run)
    second = await _post(http, "/v1/runs", run)
    failed = await _post(http, "/v1/runs", {**run, "agent_id": bad_agent["id"]})
    queued = await _post(http, "/v1/runs", {**run, "wait": False}, status=202)
    assert [first["status"], second["status"], failed["status"]] == ["succeeded", "succeeded", "failed"]
    assert failed["error"]["code"] == "PROVIDER_RATE_LIMITED"

    async def queued_done() -> None:
        got = (await http.get(f"/v1/runs/{queued['id']}")).json()
        assert got["status"] == "succeeded", got

    await eventually(queued_done, timeout=30)

    # agent_svc: the registry built each agent once and served the repeats from memory.
    async def agent_metrics() -> Metrics:
        metrics = await scrape(system.metrics_url("agent_svc"))
        assert metrics.value("agentmgr_agent_registry_misses_total") == 2  # two agents
        assert metrics.value("agentmgr_agent_registry_builds_total") == 2
        assert metrics.value("agentmgr_agent_registry_hits_total") >= 2  # the second run, the queued one
        assert metrics.value("agentmgr_agent_registry_entries") == 2
        assert metrics.value("agentmgr_runs_finished_total", status="succeeded", error_code="") == 3
        assert (
            metrics.value("agentmgr_runs_finished_total", status="failed", error_code="PROVIDER_RATE_LIMITED")
            == 1
        )
        assert metrics.value("agentmgr_runs_in_progress") == 0
        # The run worker's durable consumer: nothing left to deliver or to acknowledge.
        labels = {"stream": "AGENTMGR_JOBS", "consumer": "run-worker"}
        assert metrics.value("agentmgr_jetstream_consumer_pending_messages", **labels) == 0
        assert metrics.value("agentmgr_jetstream_consumer_ack_pending_messages", **labels) == 0
        # Every event and job went out; the outbox is empty again.
        assert metrics.value("agentmgr_outbox_published_total", service="agent_svc") >= 10
        assert metrics.value("agentmgr_outbox_backlog_rows", service="agent_svc") == 0
        assert metrics.value("agentmgr_outbox_oldest_age_seconds", service="agent_svc") == 0
        return metrics

    agent_scrape = await eventually(agent_metrics, timeout=20)

    # A change to the agent evicts its built agent (learned from the event).
    patched = await http.patch(f"/v1/agents/{agent['id']}", json={"description": "changed"})
    assert patched.status_code == 200, patched.text

    async def evicted() -> None:
        metrics = await scrape(system.metrics_url("agent_svc"))
        assert metrics.value("agentmgr_agent_registry_evictions_total") >= 1
        assert metrics.value("agentmgr_agent_registry_entries") == 1

    await eventually(evicted, timeout=20)

    async def provider_metrics() -> Metrics:
        metrics = await scrape(system.metrics_url("provider_svc"))
        labels = {"stream": "AGENTMGR_JOBS", "consumer": "provider-validation"}
        assert metrics.value("agentmgr_jetstream_consumer_pending_messages", **labels) == 0
        assert metrics.value("agentmgr_jetstream_consumer_ack_pending_messages", **labels) == 0
        assert metrics.value("agentmgr_outbox_published_total", service="provider_svc") >= 2
        assert metrics.value("agentmgr_outbox_backlog_rows", service="provider_svc") == 0
        assert metrics.value("agentmgr_outbox_oldest_age_seconds", service="provider_svc") == 0
        # The gRPC calls agent_svc made with its service key are counted too.
        assert (
            metrics.value(
                "agentmgr_grpc_server_handled_total",
                method="/agentmgr.v1.CredentialService/ResolveCredentials",
                code="OK",
            )
            >= 1
        )
        return metrics

    provider_scrape = await eventually(provider_metrics, timeout=20)

    # The gateway: its event consumer's lag and what waits for fan-out.
    async def gateway_metrics() -> Metrics:
        metrics = await scrape(system.metrics_url("gateway"))
        labels = {"stream": "AGENTMGR_EVENTS", "consumer": "gateway-hub"}
        assert metrics.value("agentmgr_jetstream_consumer_pending_messages", **labels) == 0
        assert metrics.value("agentmgr_events_buffered_messages") == 0
        assert (
            metrics.value("agentmgr_http_requests_total", method="POST", route="/v1/runs", status="201") == 3
        )
        return metrics

    gateway_scrape = await eventually(gateway_metrics, timeout=20)

    for metrics in (agent_scrape, provider_scrape, gateway_scrape):
        _no_id_labels(metrics)
