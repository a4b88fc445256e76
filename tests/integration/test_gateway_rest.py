"""The REST API end to end: every path and every error status, through real services."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.asyncio

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def admin(keys):
    return {"authorization": f"Bearer {keys.admin}"}


@pytest.fixture(scope="module")
def viewer(keys):
    return {"authorization": f"Bearer {keys.viewer}"}


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message", "details"} <= set(body["error"]), body
    return body["error"]


def fields_of(response) -> list[str]:
    return [d["field"] for d in error_of(response)["details"] if d["type"] == "field_violation"]


async def make_provider(gateway, admin, **body):
    body = {"name": _name("p"), "type": "test", **body}
    response = await gateway.http.post("/v1/providers", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


async def make_agent(gateway, admin, provider_id, **body):
    body = {"name": _name("a"), "provider_id": provider_id, "model": "test", **body}
    response = await gateway.http.post("/v1/agents", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


async def make_task(gateway, admin, **body):
    body = {"name": _name("t"), "response_schema": SCHEMA, "prompt_template": "Where is {place}?", **body}
    response = await gateway.http.post("/v1/tasks", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


# --- providers ---------------------------------------------------------------------


async def test_providers_paths(gateway, admin, viewer, js):
    created = await make_provider(gateway, admin, config={"region": "eu", "n": 3})
    assert created["validation"]["status"] == "valid"
    assert created["config"] == {"region": "eu", "n": 3}
    assert "api_key" not in created and created["api_key_hint"] == ""

    got = await gateway.http.get(f"/v1/providers/{created['id']}", headers=viewer)
    assert got.status_code == 200 and got.json() == created
    assert got.headers["etag"] == f'"{created["etag"]}"'

    listed = await gateway.http.get(
        "/v1/providers", params={"type": "test", "page_size": 1000}, headers=viewer
    )
    assert listed.status_code == 200
    assert created["id"] in [p["id"] for p in listed.json()["providers"]]
    assert "next_page_token" in listed.json()

    renamed = await gateway.http.patch(
        f"/v1/providers/{created['id']}",
        json={"name": _name("p2")},
        headers={**admin, "if-match": got.headers["etag"]},
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["etag"] != created["etag"]
    stale = await gateway.http.patch(
        f"/v1/providers/{created['id']}", json={"name": _name("p3"), "etag": created["etag"]}, headers=admin
    )
    assert stale.status_code == 409 and error_of(stale)["code"] == "ABORTED"

    validating = await gateway.http.post(f"/v1/providers/{created['id']}:validate", headers=admin)
    assert validating.status_code in (202, 429), validating.text
    if validating.status_code == 429:
        assert int(validating.headers["retry-after"]) >= 1

    deleted = await gateway.http.delete(f"/v1/providers/{created['id']}", headers=admin)
    assert deleted.status_code == 200 and deleted.json()["id"] == created["id"]
    gone = await gateway.http.get(f"/v1/providers/{created['id']}", headers=admin)
    assert gone.status_code == 404 and error_of(gone)["code"] == "NOT_FOUND"


async def test_provider_key_is_write_only_and_rate_limited_validation(gateway, admin, llm_stub):
    created = await make_provider(
        gateway, admin, type="openai_compatible", base_url=llm_stub.url(), api_key="sk-write-only-0000aaaa"
    )
    assert created["api_key_hint"] == "sk-…aaaa"
    assert "sk-write-only" not in str(created)
    first = await gateway.http.post(f"/v1/providers/{created['id']}:validate", headers=admin)
    # Creating counted as a validation request; the per-provider limit answers 429 + Retry-After.
    assert first.status_code == 429
    assert int(first.headers["retry-after"]) >= 1
    assert error_of(first)["code"] == "RESOURCE_EXHAUSTED"
    assert any(d["type"] == "retry_info" for d in error_of(first)["details"])


# --- agents and tasks --------------------------------------------------------------


async def test_agents_and_versions_paths(gateway, admin, viewer):
    provider = await make_provider(gateway, admin)
    agent = await make_agent(
        gateway, admin, provider["id"], model_settings={"temperature": 0.5}, labels={"team": "x"}
    )
    assert agent["version"] == 1 and agent["output_retries"] == 2
    assert agent["model_settings"]["temperature"] == 0.5
    updated = await gateway.http.patch(
        f"/v1/agents/{agent['id']}", json={"system_prompt": "v2"}, headers=admin
    )
    assert updated.status_code == 200 and updated.json()["version"] == 2
    v1 = await gateway.http.get(f"/v1/agents/{agent['id']}/versions/1", headers=viewer)
    assert v1.status_code == 200 and v1.json()["system_prompt"] == ""
    versions = await gateway.http.get(f"/v1/agents/{agent['id']}/versions", headers=viewer)
    assert [a["version"] for a in versions.json()["agents"]] == [2, 1]
    listed = await gateway.http.get("/v1/agents", params={"provider_id": provider["id"]}, headers=viewer)
    assert [a["id"] for a in listed.json()["agents"]] == [agent["id"]]
    by_label = await gateway.http.get("/v1/agents", params={"label": "team=x"}, headers=viewer)
    assert agent["id"] in [a["id"] for a in by_label.json()["agents"]]
    in_use = await gateway.http.delete(f"/v1/providers/{provider['id']}", headers=admin)
    assert in_use.status_code == 400 and error_of(in_use)["code"] == "FAILED_PRECONDITION"
    deleted = await gateway.http.delete(f"/v1/agents/{agent['id']}", headers=admin)
    assert deleted.status_code == 200
    assert (
        await gateway.http.delete(f"/v1/providers/{provider['id']}", params={"force": "true"}, headers=admin)
    ).status_code == 200


async def test_tasks_versions_and_schema_check(gateway, admin, viewer):
    task = await make_task(gateway, admin)
    assert task["variables"] == ["place"] and task["response_schema"] == SCHEMA
    new_schema = {"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"}}}
    updated = await gateway.http.patch(
        f"/v1/tasks/{task['id']}", json={"response_schema": new_schema}, headers=admin
    )
    assert updated.status_code == 200 and updated.json()["version"] == 2
    v1 = await gateway.http.get(f"/v1/tasks/{task['id']}/versions/1", headers=viewer)
    assert v1.json()["response_schema"] == SCHEMA
    versions = await gateway.http.get(f"/v1/tasks/{task['id']}/versions", headers=viewer)
    assert [t["version"] for t in versions.json()["tasks"]] == [2, 1]
    assert (await gateway.http.get("/v1/tasks", headers=viewer)).status_code == 200
    verdict = await gateway.http.post(
        "/v1/tasks:check-schema",
        json={
            "response_schema": {"type": "object", "properties": {"a": {"type": "string", "minLength": -1}}}
        },
        headers=viewer,
    )
    assert verdict.status_code == 200
    assert verdict.json()["valid"] is False
    assert verdict.json()["errors"][0]["pointer"] == "/properties/a/minLength"
    good = await gateway.http.post("/v1/tasks:check-schema", json={"response_schema": SCHEMA}, headers=viewer)
    assert good.json()["valid"] is True and good.json()["warnings"]
    bad = await gateway.http.post(
        "/v1/tasks",
        json={"name": _name("t"), "response_schema": {"type": "object", "not": {}}},
        headers=admin,
    )
    assert bad.status_code == 400 and fields_of(bad) == ["response_schema"]
    assert (await gateway.http.delete(f"/v1/tasks/{task['id']}", headers=admin)).status_code == 200
    assert (await gateway.http.get(f"/v1/tasks/{task['id']}", headers=admin)).status_code == 404


# Neither sorted nor JSONB's order (shortest key first), nested.
ORDERED: dict[str, Any] = {
    "type": "object",
    "properties": {
        "zeta": {"type": "string"},
        "alpha": {"type": "object", "properties": {"zz": {"type": "integer"}, "a": {"type": "string"}}},
        "mid": {"type": "number", "minimum": 0},
        "beta": {"type": "boolean"},
    },
    "required": ["zeta", "alpha", "mid", "beta"],
}


def order(value) -> str:
    """Key order made visible: JSON text keeps it, `==` on dicts does not."""
    return json.dumps(value)


async def test_task_schema_keeps_the_key_order_of_the_body(gateway, admin, viewer):
    created = await gateway.http.post(
        "/v1/tasks", json={"name": _name("ord"), "response_schema": ORDERED}, headers=admin
    )
    assert created.status_code == 201, created.text
    task = created.json()
    assert order(task["response_schema"]) == order(ORDERED)
    assert "response_schema_json" not in task  # REST keeps its documented shape
    got = await gateway.http.get(f"/v1/tasks/{task['id']}", headers=viewer)
    assert got.json() == task and order(got.json()["response_schema"]) == order(ORDERED)
    listed = await gateway.http.get("/v1/tasks", params={"page_size": 1000}, headers=viewer)
    (mine,) = [t for t in listed.json()["tasks"] if t["id"] == task["id"]]
    assert order(mine["response_schema"]) == order(ORDERED)

    # The same schema in another order is a new version, shown in its order.
    reordered = {**ORDERED, "properties": dict(reversed(list(ORDERED["properties"].items())))}
    updated = await gateway.http.patch(
        f"/v1/tasks/{task['id']}", json={"response_schema": reordered}, headers=admin
    )
    assert updated.status_code == 200 and updated.json()["version"] == 2
    assert order(updated.json()["response_schema"]) == order(reordered)
    v1 = await gateway.http.get(f"/v1/tasks/{task['id']}/versions/1", headers=viewer)
    assert order(v1.json()["response_schema"]) == order(ORDERED)
    versions = await gateway.http.get(f"/v1/tasks/{task['id']}/versions", headers=viewer)
    assert [order(t["response_schema"]) for t in versions.json()["tasks"]] == [
        order(reordered),
        order(ORDERED),
    ]
    verdict = await gateway.http.post(
        "/v1/tasks:check-schema", json={"response_schema": reordered}, headers=viewer
    )
    assert verdict.json()["valid"] is True
    deleted = await gateway.http.delete(f"/v1/tasks/{task['id']}", headers=admin)
    assert order(deleted.json()["response_schema"]) == order(reordered)


# --- runs ------------------------------------------------------------------------------


async def test_runs_paths(gateway, admin, viewer, llm_stub):
    provider = await make_provider(gateway, admin)
    agent = await make_agent(gateway, admin, provider["id"])
    task = await make_task(gateway, admin)
    body = {"agent_id": agent["id"], "task_id": task["id"], "variables": {"place": "Rome"}}
    done = await gateway.http.post("/v1/runs", json=body, headers=admin)
    assert done.status_code == 201, done.text
    run = done.json()
    assert run["status"] == "succeeded" and "city" in run["output"]
    queued = await gateway.http.post("/v1/runs", json={**body, "wait": False}, headers=admin)
    assert queued.status_code == 202 and queued.json()["status"] == "queued"
    got = await gateway.http.get(f"/v1/runs/{run['id']}", headers=viewer)
    assert got.status_code == 200 and got.json()["id"] == run["id"]
    listed = await gateway.http.get("/v1/runs", params={"task_id": task["id"]}, headers=viewer)
    assert run["id"] in [r["id"] for r in listed.json()["runs"]]

    # A provider failure is a 201 with a failed run, not a 5xx.
    failing = await make_provider(
        gateway, admin, type="openai_compatible", base_url=llm_stub.url(), api_key="sk-wrong-key-1234567890"
    )
    bad_agent = await make_agent(gateway, admin, failing["id"], model="m")
    failed = await gateway.http.post("/v1/runs", json={**body, "agent_id": bad_agent["id"]}, headers=admin)
    assert failed.status_code == 201, failed.text
    assert failed.json()["status"] == "failed" and failed.json()["error"]["code"] == "PROVIDER_AUTH_FAILED"

    streamed = await gateway.http.post("/v1/runs:stream", json=body, headers=admin)
    assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
    assert "event: run" in streamed.text

    missing = await gateway.http.post("/v1/runs", json={**body, "variables": {}}, headers=admin)
    assert missing.status_code == 400 and fields_of(missing) == ["variables.place"]
    forbidden = await gateway.http.post("/v1/runs", json=body, headers=viewer)
    assert forbidden.status_code == 403 and error_of(forbidden)["code"] == "PERMISSION_DENIED"


async def test_runs_fast_path_answers_as_the_fastapi_route(gateway, admin, viewer, keys):
    """`POST /v1/runs` is served below FastAPI (services/gateway/fastpath.py); every answer
    equals the FastAPI route's, which also still serves whatever the fast path passes on."""
    provider = await make_provider(gateway, admin)
    agent = await make_agent(gateway, admin, provider["id"])
    task = await make_task(gateway, admin)
    body = {"agent_id": agent["id"], "task_id": task["id"], "variables": {"place": "Rome"}}
    app = gateway.server.app
    assert app is not None
    route = httpx.AsyncClient(transport=httpx.ASGITransport(app=app.api), base_url="http://gw", timeout=30)
    json_type = {"content-type": "application/json"}
    cases: list[tuple[str, dict[str, str], bytes, bool]] = [
        # (what, headers, body, served by the fast path)
        ("finished", admin, json.dumps(body).encode(), True),
        ("queued", admin, json.dumps({**body, "wait": False}).encode(), True),
        ("unknown agent", admin, json.dumps({**body, "agent_id": "agt_nope"}).encode(), True),
        ("missing variable", admin, json.dumps({**body, "variables": {}}).encode(), True),
        ("viewer", viewer, json.dumps(body).encode(), True),
        ("unknown key", {"authorization": "Bearer amk_nope"}, json.dumps(body).encode(), True),
        ("no key", {}, json.dumps(body).encode(), False),
        ("basic auth", {"authorization": "Basic abc"}, json.dumps(body).encode(), False),
        ("wrong type", admin, json.dumps({**body, "agent_version": "x"}).encode(), False),
        ("unknown field", admin, json.dumps({**body, "bogus": 1}).encode(), False),
        ("not json", admin, b"{not json", False),
        ("not an object", admin, b"[1, 2]", False),
    ]
    try:
        for what, headers, content, fast in cases:
            before = app.fast_runs.served
            served = await gateway.http.post("/v1/runs", content=content, headers={**headers, **json_type})
            assert app.fast_runs.served - before == (1 if fast else 0), what
            expected = await route.post("/v1/runs", content=content, headers={**headers, **json_type})
            assert served.status_code == expected.status_code, (what, served.text, expected.text)
            assert served.headers["content-type"] == expected.headers["content-type"], what
            assert served.headers.get("retry-after") == expected.headers.get("retry-after"), what
            if served.status_code < 300:  # two runs: the same shape, their own ids and times
                mine, theirs = served.json(), expected.json()
                assert mine.keys() == theirs.keys() and mine["status"] == theirs["status"], what
                assert mine.get("output") == theirs.get("output"), what
            else:
                assert served.json() == expected.json(), what

        # The request id is echoed, the route label is the template, as for FastAPI's routes.
        traced = {**admin, "x-request-id": "req-fast-1"}
        echoed = await gateway.http.post("/v1/runs", json=body, headers=traced)
        assert echoed.status_code == 201 and echoed.headers["x-request-id"] == "req-fast-1"
        metrics = (await gateway.http.get("/metrics")).text
        assert 'agentmgr_http_requests_total{method="POST",route="/v1/runs",status="201"}' in metrics

        # A body over the limit is refused before anything is read into the fast path.
        huge = b'{"agent_id": "' + b"a" * (gateway.server.settings.max_body_bytes + 1) + b'"}'
        too_large = await gateway.http.post("/v1/runs", content=huge, headers={**admin, **json_type})
        assert too_large.status_code == 413 and error_of(too_large)["code"] == "INVALID_ARGUMENT"
    finally:
        await route.aclose()


# --- errors ----------------------------------------------------------------------------


async def test_authentication_errors(gateway, keys):
    for headers in ({}, {"authorization": "Bearer amk_nope"}, {"authorization": "Basic abc"}):
        response = await gateway.http.get("/v1/providers", headers=headers)
        assert response.status_code == 401, response.text
        assert error_of(response)["code"] == "UNAUTHENTICATED"
    me = await gateway.http.get("/v1/me", headers={"authorization": f"Bearer {keys.team_viewer}"})
    assert me.json() == {"key_id": me.json()["key_id"], "project": "team", "role": "viewer"}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/providers", {"name": "Bad Name", "type": "test"}, "name"),
        ("/v1/providers", {"name": "ok-name", "type": "gpt"}, "type"),
        ("/v1/providers", {"name": 5, "type": "test"}, "name"),
        ("/v1/providers", {"type": "test"}, "name"),
        ("/v1/providers", {"name": "ok", "type": "test", "bogus": 1}, "bogus"),
        ("/v1/providers", {"name": "ok", "type": "openai_compatible"}, "base_url"),
        (
            "/v1/providers",
            {"name": "ok", "type": "ollama", "base_url": "http://169.254.169.254/"},
            "base_url",
        ),
        ("/v1/agents", {"name": "a", "model": "m", "provider_id": "prv_nope"}, "provider_id"),
        (
            "/v1/agents",
            {"name": "a", "model": "m", "provider_id": "p", "model_settings": {"temperature": 7}},
            "model_settings.temperature",
        ),
        ("/v1/tasks", {"name": "t", "response_schema": {"type": "string"}}, "response_schema"),
        (
            "/v1/tasks",
            {"name": "t", "response_schema": SCHEMA, "prompt_template": "{a.b}"},
            "prompt_template",
        ),
        ("/v1/runs", {"agent_id": "", "task_id": "x"}, "agent_id"),
        ("/v1/runs", {"agent_id": "a", "task_id": "t", "agent_version": -1}, "agent_version"),
    ],
)
async def test_bad_bodies_are_400_naming_the_field(gateway, admin, path, body, field):
    response = await gateway.http.post(path, json=body, headers=admin)
    assert response.status_code == 400, response.text
    assert error_of(response)["code"] == "INVALID_ARGUMENT"
    assert fields_of(response)[0] == field


async def test_malformed_json_wrong_types_unknown_ids_and_limits(gateway, admin):
    broken = await gateway.http.post(
        "/v1/providers", content=b"{not json", headers={**admin, "content-type": "application/json"}
    )
    assert broken.status_code == 400 and fields_of(broken) == ["body"]
    array = await gateway.http.post("/v1/providers", json=[1, 2], headers=admin)
    assert array.status_code == 400
    bad_query = await gateway.http.get("/v1/providers", params={"page_size": "many"}, headers=admin)
    assert bad_query.status_code == 400 and fields_of(bad_query) == ["page_size"]
    too_big = await gateway.http.get("/v1/providers", params={"page_size": 5000}, headers=admin)
    assert too_big.status_code == 400 and fields_of(too_big) == ["page_size"]
    bad_token = await gateway.http.get("/v1/providers", params={"page_token": "garbage"}, headers=admin)
    assert bad_token.status_code == 400 and fields_of(bad_token) == ["page_token"]
    for path in (
        "/v1/providers/prv_x",
        "/v1/agents/agt_x",
        "/v1/tasks/tsk_x",
        "/v1/runs/run_x",
        "/v1/tasks/tsk_x/versions/3",
    ):
        response = await gateway.http.get(path, headers=admin)
        assert response.status_code == 404, path
    huge = await gateway.http.post(
        "/v1/tasks",
        content=b'{"name": "' + b"x" * 2_000_000 + b'"}',
        headers={**admin, "content-type": "application/json"},
    )
    assert huge.status_code == 413
    unknown_route = await gateway.http.get("/v1/nothing-here", headers=admin)
    assert unknown_route.status_code == 404 and error_of(unknown_route)["code"] == "NOT_FOUND"
    duplicate = await make_provider(gateway, admin)
    again = await gateway.http.post(
        "/v1/providers", json={"name": duplicate["name"], "type": "test"}, headers=admin
    )
    assert again.status_code == 409 and error_of(again)["code"] == "ALREADY_EXISTS"


async def test_rate_limit_per_key(stack, nats_server, keys):
    from tests.conftest import start_gateway

    limited = await start_gateway(stack, nats_server.url, rate_limit_rps=1.0, rate_limit_burst=2)
    try:
        headers = {"authorization": f"Bearer {keys.viewer}"}
        statuses = [(await limited.http.get("/v1/providers", headers=headers)).status_code for _ in range(4)]
        assert statuses[:2] == [200, 200] and 429 in statuses[2:]
        response = await limited.http.get("/v1/providers", headers=headers)
        assert response.status_code == 429 and int(response.headers["retry-after"]) >= 1
        # Another key has its own bucket.
        other = await limited.http.get("/v1/providers", headers={"authorization": f"Bearer {keys.admin}"})
        assert other.status_code == 200
    finally:
        await limited.http.aclose()
        await limited.server.stop()


async def test_health_readiness_metrics_docs(gateway, admin):
    assert (await gateway.http.get("/healthz")).json() == {"status": "ok"}
    ready = await gateway.http.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"provider_svc": True, "agent_svc": True, "nats": True, "keys": True}
    listed = await gateway.http.get("/v1/providers", headers={**admin, "x-request-id": "trace-me-42"})
    assert listed.headers["x-request-id"] == "trace-me-42"
    assert len((await gateway.http.get("/v1/providers", headers=admin)).headers["x-request-id"]) == 32
    refused = await gateway.http.get("/v1/providers/prv_nope", headers=admin)
    assert refused.status_code == 404 and refused.headers["x-request-id"]
    metrics = await gateway.http.get("/metrics")
    assert 'agentmgr_http_requests_total{method="GET",route="/v1/providers",status="200"}' in metrics.text
    assert (
        'agentmgr_http_requests_total{method="GET",route="/v1/providers/{provider_id}",status="404"}'
        in metrics.text
    )
    assert "agentmgr_realtime_clients" in metrics.text
    spec = (await gateway.http.get("/openapi.json")).json()
    for path in (
        "/v1/providers",
        "/v1/providers/{provider_id}:validate",
        "/v1/tasks/{task_id}/versions/{version}",
        "/v1/runs",
    ):
        assert path in spec["paths"], path
    assert "Provider" in spec["components"]["schemas"] and "ErrorBody" in spec["components"]["schemas"]
    assert (await gateway.http.get("/docs")).status_code == 200
