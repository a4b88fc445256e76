"""WebSocket and Socket.IO: auth, protocol, delivery, pacing with coalescing, slow clients."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
import socketio
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from libs.common.auth import Role, create_api_key, revoke_api_key
from libs.common.messaging import ensure_api_key_bucket
from tests.conftest import start_gateway
from tests.support.eventually import eventually

pytestmark = pytest.mark.asyncio


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def recv(ws, timeout: float = 5.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_event(ws, predicate, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        frame = await recv(ws, max(0.1, deadline - time.monotonic()))
        if frame.get("type") == "event" and predicate(frame):
            return frame


async def subscribe(ws, *topics: str) -> dict:
    await ws.send(json.dumps({"type": "subscribe", "topics": list(topics)}))
    return await recv(ws)


async def test_handshake_needs_a_valid_key(gateway):
    for url in (gateway.ws_url(), gateway.ws_url() + "?api_key=amk_wrong"):
        with pytest.raises(InvalidStatus) as info:
            async with websockets.connect(url):
                pass
        assert info.value.response.status_code == 401


async def test_protocol_frames(gateway, keys):
    async with websockets.connect(gateway.ws_url() + f"?api_key={keys.viewer}") as ws:
        assert await subscribe(ws, "providers", "runs") == {
            "type": "subscribed",
            "topics": ["providers", "runs"],
        }
        await ws.send(json.dumps({"type": "subscribe", "topics": ["gossip"]}))
        error = await recv(ws)
        assert error["type"] == "error" and "gossip" in error["message"]
        await ws.send("not json")
        assert (await recv(ws))["type"] == "error"
        await ws.send(json.dumps({"type": "dance"}))
        assert (await recv(ws))["type"] == "error"
        await ws.send(json.dumps({"type": "ping"}))
        assert await recv(ws) == {"type": "pong"}
        await ws.send(json.dumps({"type": "unsubscribe", "topics": ["runs"]}))
        assert await recv(ws) == {"type": "unsubscribed", "topics": ["providers"]}
    # The key may also come as a bearer header.
    async with websockets.connect(
        gateway.ws_url(), additional_headers={"authorization": f"Bearer {keys.viewer}"}
    ) as ws:
        assert (await subscribe(ws, "agents"))["type"] == "subscribed"


async def test_events_arrive_as_rest_shows_them_and_only_for_visible_projects(gateway, keys):
    admin = {"authorization": f"Bearer {keys.admin}"}
    async with (
        websockets.connect(gateway.ws_url() + f"?api_key={keys.viewer}") as everyone,
        websockets.connect(gateway.ws_url() + f"?api_key={keys.team_viewer}") as team,
    ):
        await subscribe(everyone, "providers")
        await subscribe(team, "providers")
        created = (
            await gateway.http.post(
                "/v1/providers", json={"name": _name("ws"), "type": "test"}, headers=admin
            )
        ).json()
        frame = await recv_event(everyone, lambda f: f["event"]["subject"] == f"providers/{created['id']}")
        assert frame["topic"] == "providers"
        assert frame["event"]["type"] in ("agentmgr.provider.created", "agentmgr.provider.validated")
        assert frame["event"]["data"] == created
        team_created = (
            await gateway.http.post(
                "/v1/providers", json={"name": _name("ws"), "type": "test", "project": "team"}, headers=admin
            )
        ).json()
        frame = await recv_event(team, lambda f: True)
        assert frame["event"]["project"] == "team"
        assert frame["event"]["subject"] == f"providers/{team_created['id']}"


async def test_task_events_carry_the_schema_in_the_authors_key_order(gateway, keys):
    admin = {"authorization": f"Bearer {keys.admin}"}
    schema = {
        "type": "object",
        "properties": {"zeta": {"type": "string"}, "alpha": {"type": "integer"}, "mid": {"type": "string"}},
        "required": ["zeta"],
    }
    async with websockets.connect(gateway.ws_url() + f"?api_key={keys.viewer}") as ws:
        await subscribe(ws, "tasks")
        created = (
            await gateway.http.post(
                "/v1/tasks", json={"name": _name("ws"), "response_schema": schema}, headers=admin
            )
        ).json()
        frame = await recv_event(ws, lambda f: f["event"]["subject"] == f"tasks/{created['id']}")
        assert frame["event"]["data"] == created
        # The frame's JSON text keeps the order (json.loads does too): what the console shows.
        assert list(frame["event"]["data"]["response_schema"]["properties"]) == ["zeta", "alpha", "mid"]


async def test_with_compression_negotiated_events_still_arrive(stack, nats_server, keys):
    """Events are framed once, uncompressed, for every client; a connection that negotiated
    permessage-deflate (`WS_COMPRESSION=true`) gets them compressed, the ordinary way."""
    compressing = await start_gateway(stack, nats_server.url, ws_compression=True)
    admin = {"authorization": f"Bearer {keys.admin}"}
    try:
        async with (
            websockets.connect(compressing.ws_url() + f"?api_key={keys.viewer}") as deflated,
            websockets.connect(compressing.ws_url() + f"?api_key={keys.viewer}", compression=None) as plain,
        ):
            assert [type(e).__name__ for e in deflated.protocol.extensions] == ["PerMessageDeflate"]
            assert plain.protocol.extensions == []
            await subscribe(deflated, "providers")
            await subscribe(plain, "providers")
            created = (
                await compressing.http.post(
                    "/v1/providers", json={"name": _name("zip"), "type": "test"}, headers=admin
                )
            ).json()
            for ws in (deflated, plain):
                frame = await recv_event(ws, lambda f: f["event"]["subject"] == f"providers/{created['id']}")
                assert frame["event"]["data"] == created
    finally:
        await compressing.http.aclose()
        await compressing.server.stop()


async def test_pacing_coalesces_and_the_final_state_arrives(stack, nats_server, keys):
    paced = await start_gateway(stack, nats_server.url, ws_rate_per_topic=5.0)
    admin = {"authorization": f"Bearer {keys.admin}"}
    try:
        created = (
            await paced.http.post("/v1/providers", json={"name": _name("hot"), "type": "test"}, headers=admin)
        ).json()
        async with websockets.connect(paced.ws_url() + f"?api_key={keys.viewer}") as ws:
            await subscribe(ws, "providers")
            final_name = ""
            started = time.monotonic()
            for i in range(40):  # 40 changes of one resource as fast as the API takes them
                final_name = f"hot-{i}-{uuid.uuid4().hex[:4]}"
                response = await paced.http.patch(
                    f"/v1/providers/{created['id']}", json={"name": final_name}, headers=admin
                )
                assert response.status_code == 200
            received = []
            while True:
                frame = await recv_event(ws, lambda f: f["event"]["subject"] == f"providers/{created['id']}")
                received.append(frame)
                if frame["event"]["data"]["name"] == final_name:
                    break
            elapsed = time.monotonic() - started
            assert len(received) < 40, "updates of one resource must be coalesced"
            # At most the burst plus the rate over the time taken.
            assert len(received) <= 5 + 5 * (elapsed + 1)
    finally:
        await paced.http.aclose()
        await paced.server.stop()


async def test_a_client_that_cannot_keep_up_is_disconnected(stack, nats_server, keys):
    tight = await start_gateway(stack, nats_server.url, ws_rate_per_topic=1.0, ws_max_pending=10)
    admin = {"authorization": f"Bearer {keys.admin}"}
    try:
        async with websockets.connect(tight.ws_url() + f"?api_key={keys.viewer}") as ws:
            await subscribe(ws, "providers")
            for _ in range(20):  # 20 distinct resources: nothing to coalesce, 1 message/s allowed
                await tight.http.post(
                    "/v1/providers", json={"name": _name("flood"), "type": "test"}, headers=admin
                )

            async def drain() -> None:
                for _ in range(100):
                    await recv(ws, timeout=10)

            with pytest.raises(ConnectionClosed) as info:
                await drain()
            assert info.value.rcvd is not None and info.value.rcvd.code == 4008
    finally:
        await tight.http.aclose()
        await tight.server.stop()


async def test_revoking_the_key_closes_the_connection(gateway, js):
    bucket = await ensure_api_key_bucket(js, replicas=1)
    key, record = await create_api_key(bucket, name="short-lived", project="*", role=Role.VIEWER)

    async def connect():
        deadline = time.monotonic() + 5
        while True:
            try:
                return await websockets.connect(gateway.ws_url() + f"?api_key={key}")
            except InvalidStatus:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    ws = await connect()
    await subscribe(ws, "providers")
    await revoke_api_key(bucket, record.id)
    with pytest.raises(ConnectionClosed) as info:
        await recv(ws, timeout=10)
    assert info.value.rcvd is not None and info.value.rcvd.code == 4001


async def test_socketio_clients_receive_the_same_events(gateway, keys):
    client = socketio.AsyncClient()
    received: asyncio.Queue[dict] = asyncio.Queue()
    client.on("event", received.put_nowait)
    await client.connect(
        gateway.url, auth={"api_key": keys.viewer}, socketio_path="socket.io", transports=["websocket"]
    )
    try:
        ack = await client.call("subscribe", {"topics": ["tasks"]}, timeout=5)
        assert ack == {"topics": ["tasks"]}
        bad = await client.call("subscribe", {"topics": ["nope"]}, timeout=5)
        assert "nope" in bad["error"]
        created = (
            await gateway.http.post(
                "/v1/tasks",
                json={"name": _name("sio"), "response_schema": {"type": "object"}},
                headers={"authorization": f"Bearer {keys.admin}"},
            )
        ).json()
        while True:
            data = await asyncio.wait_for(received.get(), 10)
            if data["event"]["subject"] == f"tasks/{created['id']}":
                break
        assert data["topic"] == "tasks" and data["event"]["data"] == created
    finally:
        await client.disconnect()
    refused = socketio.AsyncClient()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await refused.connect(gateway.url, auth={"api_key": "amk_wrong"}, transports=["websocket"])


async def test_two_gateway_replicas_both_deliver_every_event(gateway, stack, nats_server, keys):
    second = await start_gateway(stack, nats_server.url)
    try:
        async with (
            websockets.connect(gateway.ws_url() + f"?api_key={keys.viewer}") as one,
            websockets.connect(second.ws_url() + f"?api_key={keys.viewer}") as two,
        ):
            await subscribe(one, "agents")
            await subscribe(two, "agents")
            provider = (
                await gateway.http.post(
                    "/v1/providers",
                    json={"name": _name("p"), "type": "test"},
                    headers={"authorization": f"Bearer {keys.admin}"},
                )
            ).json()
            agent = (
                await second.http.post(
                    "/v1/agents",
                    json={"name": _name("a"), "provider_id": provider["id"], "model": "test"},
                    headers={"authorization": f"Bearer {keys.admin}"},
                )
            ).json()
            for ws in (one, two):
                frame = await recv_event(ws, lambda f: f["event"]["subject"] == f"agents/{agent['id']}")
                assert frame["event"]["type"] == "agentmgr.agent.created"
    finally:
        await second.http.aclose()
        await second.server.stop()


async def test_a_replica_follows_the_event_stream_only_while_it_has_clients(stack, nats_server, keys):
    """REST alone costs no event consumption; a subscription starts it (and everything
    after the acknowledgement arrives); the last client leaving stops it again."""
    lazy = await start_gateway(stack, nats_server.url, ws_unfollow_after_s=0.0)
    hub = lazy.server.hub
    assert hub is not None
    admin = {"authorization": f"Bearer {keys.admin}"}

    async def create() -> dict:
        response = await lazy.http.post(
            "/v1/providers", json={"name": _name("lazy"), "type": "test"}, headers=admin
        )
        assert response.status_code == 201
        return response.json()

    try:
        await create()
        assert not hub.following()
        for _ in range(2):  # following again after it stopped
            async with websockets.connect(lazy.ws_url() + f"?api_key={keys.viewer}") as ws:
                assert not hub.following(), "connected but not subscribed yet"
                assert (await subscribe(ws, "providers"))["type"] == "subscribed"
                assert hub.following()
                created = await create()
                subject = f"providers/{created['id']}"
                frame = await recv_event(ws, lambda f, subject=subject: f["event"]["subject"] == subject)
                assert frame["event"]["data"] == created

            async def stopped() -> None:
                assert not hub.following()

            await eventually(stopped, timeout=5)
    finally:
        await lazy.http.aclose()
        await lazy.server.stop()
