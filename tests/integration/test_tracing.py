"""OpenTelemetry tracing across the services (docs/operations.md).

The services run as processes (the tracer provider is process-wide) and export to a
local OTLP/HTTP receiver the test runs; the model is the local OpenAI-compatible stub.
"""

from __future__ import annotations

import os
import uuid

import httpx
import pytest

from tests.support.eventually import eventually
from tests.support.llm_stub import Http
from tests.support.observability import ExportedSpan, OtlpReceiver, System, json_logs

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "score": {"type": "integer"}},
    "required": ["title", "score"],
}
ANSWER = {"title": "A fine piece", "score": 7}
PROMPT_MARKER = "prompt-marker-7f3a9c"
SYSTEM_PROMPT = "system-prompt-marker-b41e"
SERVER, CLIENT = 2, 3  # OTLP SpanKind
ERROR = 2  # OTLP StatusCode


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def receiver():
    running = OtlpReceiver()
    running.start()
    try:
        yield running
    finally:
        running.stop()


async def _start(tmp_path, database_url, nats_server, encryption_keys, keys, env) -> System:
    system = System(
        database_url=database_url,
        nats_url=nats_server.url,
        encryption_keys=encryption_keys,
        service_key=keys.service,
        log_dir=tmp_path,
        env=env,
    )
    try:
        await system.start()
    except BaseException:
        system.kill()
        raise
    return system


async def _setup_run(http: httpx.AsyncClient, llm_stub, model: str, agent_model: str | None = None) -> dict:
    provider = await http.post(
        "/v1/providers",
        json={
            "name": _name("p"),
            "type": "openai_compatible",
            "base_url": llm_stub.url(),
            "api_key": llm_stub.api_key,
        },
    )
    assert provider.status_code == 201, provider.text
    agent = await http.post(
        "/v1/agents",
        json={
            "name": _name("a"),
            "provider_id": provider.json()["id"],
            "model": agent_model or model,
            "system_prompt": SYSTEM_PROMPT,
        },
    )
    assert agent.status_code == 201, agent.text
    task = await http.post(
        "/v1/tasks",
        json={"name": _name("t"), "response_schema": SCHEMA, "prompt_template": "Rate {thing}."},
    )
    assert task.status_code == 201, task.text
    return {
        "agent_id": agent.json()["id"],
        "task_id": task.json()["id"],
        "variables": {"thing": PROMPT_MARKER},
    }


def _one(spans: list[ExportedSpan], **match: object) -> ExportedSpan:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in match.items())]
    assert len(found) == 1, (match, [(s.service, s.name) for s in spans])
    return found[0]


def _ancestors(span: ExportedSpan, by_id: dict[str, ExportedSpan]) -> list[ExportedSpan]:
    chain = []
    while span.parent_span_id in by_id:
        span = by_id[span.parent_span_id]
        chain.append(span)
    return chain


async def test_a_run_is_one_trace_from_the_gateway_to_the_model_call(
    tmp_path, database_url, nats_server, encryption_keys, keys, llm_stub, receiver
):
    model = _name("m")
    llm_stub.script(model, [ANSWER])
    failing = _name("m")
    llm_stub.script(failing, [Http(500)])
    system = await _start(
        tmp_path,
        database_url,
        nats_server,
        encryption_keys,
        keys,
        {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"},
    )
    try:
        async with httpx.AsyncClient(
            base_url=system.url, timeout=30, headers={"authorization": f"Bearer {keys.admin}"}
        ) as http:
            body = await _setup_run(http, llm_stub, model)
            receiver.bodies.clear()
            run = await http.post("/v1/runs", json=body)
            assert run.status_code == 201, run.text
            assert run.json()["status"] == "succeeded", run.json()

            async def traced() -> list[ExportedSpan]:
                spans = receiver.spans()
                root = _one(spans, service="gateway", name="POST /v1/runs")
                trace = [s for s in spans if s.trace_id == root.trace_id]
                assert {"gateway", "agent_svc", "provider_svc"} <= {s.service for s in trace}
                assert any(s.attributes.get("gen_ai.request.model") == model for s in trace), trace
                # agent_svc's server span ends last (after the reply): exported after the rest.
                _one(trace, service="agent_svc", name="agentmgr.v1.RunService/CreateRun", kind=SERVER)
                return trace

            trace = await eventually(traced, timeout=20)

            # A caller's own trace is continued (W3C traceparent), and a failed run's
            # log line carries the trace id.
            bad = await _setup_run(http, llm_stub, failing)
            trace_id, parent_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
            failed = await http.post(
                "/v1/runs", json=bad, headers={"traceparent": f"00-{trace_id}-{parent_id}-01"}
            )
            assert failed.status_code == 201, failed.text
            assert failed.json()["status"] == "failed"

            async def continued() -> ExportedSpan:
                spans = [s for s in receiver.spans() if s.trace_id == trace_id]
                root = _one(spans, service="gateway", name="POST /v1/runs")
                assert root.parent_span_id == parent_id
                assert any(s.service == "agent_svc" for s in spans)
                return root

            await eventually(continued, timeout=20)
    finally:
        codes = await system.stop()
    assert codes == {"gateway": 0, "agent_svc": 0, "provider_svc": 0}

    # The parent links: HTTP request → gRPC client → agent_svc server → … → model request.
    by_id = {s.span_id: s for s in trace}
    http_span = _one(trace, service="gateway", name="POST /v1/runs", kind=SERVER)
    assert http_span.parent_span_id == ""
    assert http_span.attributes["http.route"] == "/v1/runs"
    assert http_span.attributes["http.response.status_code"] == 201
    call = _one(trace, service="gateway", name="agentmgr.v1.RunService/CreateRun", kind=CLIENT)
    assert call.parent_span_id == http_span.span_id
    served = _one(trace, service="agent_svc", name="agentmgr.v1.RunService/CreateRun", kind=SERVER)
    assert served.parent_span_id == call.span_id
    assert served.attributes["rpc.grpc.status_code"] == 0
    model_call = next(s for s in trace if s.attributes.get("gen_ai.request.model") == model)
    assert model_call.service == "agent_svc"
    assert served in _ancestors(model_call, by_id)
    # The credential agent_svc fetched for this (first) run: client span → provider_svc server span.
    credential = _one(trace, service="agent_svc", name="agentmgr.v1.CredentialService/ResolveCredentials")
    assert credential.kind == CLIENT
    assert served in _ancestors(credential, by_id)
    resolved = _one(trace, service="provider_svc", name="agentmgr.v1.CredentialService/ResolveCredentials")
    assert resolved.kind == SERVER
    assert resolved.parent_span_id == credential.span_id

    # The failing model call is an error span in the caller's trace.
    failed_spans = [s for s in receiver.spans() if s.trace_id == trace_id]
    assert any(s.service == "agent_svc" and s.status_code == ERROR for s in failed_spans), failed_spans

    # No secret, prompt or answer ever left in a span.
    payload = receiver.payload()
    for secret in (llm_stub.api_key, keys.admin, keys.service, encryption_keys):
        assert str(secret).encode() not in payload
    for content in (PROMPT_MARKER, SYSTEM_PROMPT, ANSWER["title"]):
        assert str(content).encode() not in payload, content

    # The log line of the failed run carries its trace id.
    lines = json_logs(system.log("agent_svc"))
    failures = [line for line in lines if line.get("event") == "run_failed"]
    assert failures, lines[-20:]
    assert failures[-1]["trace_id"] == trace_id
    assert failures[-1]["error_code"] == "PROVIDER_ERROR"
    assert len(str(failures[-1]["span_id"])) == 16


async def test_nothing_is_exported_without_an_endpoint(
    tmp_path, database_url, nats_server, encryption_keys, keys, llm_stub, receiver
):
    model = _name("m")
    llm_stub.script(model, [ANSWER])
    # Exporter settings without an endpoint do not turn tracing on.
    system = await _start(
        tmp_path, database_url, nats_server, encryption_keys, keys, {"OTEL_BSP_SCHEDULE_DELAY": "100"}
    )
    receiver.bodies.clear()
    try:
        async with httpx.AsyncClient(
            base_url=system.url, timeout=30, headers={"authorization": f"Bearer {keys.admin}"}
        ) as http:
            body = await _setup_run(http, llm_stub, model)
            run = await http.post(
                "/v1/runs", json=body, headers={"traceparent": f"00-{uuid.uuid4().hex}-{'1' * 16}-01"}
            )
            assert run.status_code == 201, run.text
            assert run.json()["status"] == "succeeded"
    finally:
        # A graceful stop flushes whatever a tracer provider buffered: after it, nothing can arrive.
        await system.stop()
    assert receiver.bodies == []
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in os.environ or not os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"]
    lines = [
        line for name in ("gateway", "agent_svc", "provider_svc") for line in json_logs(system.log(name))
    ]
    assert lines and not any("trace_id" in line for line in lines)
