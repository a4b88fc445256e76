"""The `agentmgr` command and API-key lifecycle against the running service."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import grpc
import pytest

from agentmgr.v1 import provider_pb2 as P
from libs.common.auth import hash_api_key
from libs.common.crypto import Keyring
from libs.common.messaging import ensure_api_key_bucket
from tests.support.eventually import eventually
from tests.support.grpc_helpers import auth

pytestmark = pytest.mark.asyncio


async def agentmgr(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "libs.cli.main",
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


async def test_keys_create_list_revoke_and_revocation_reaches_the_service(providers, nats_server, tmp_path):
    env = {"NATS_URL": nats_server.url, "DATA_DIR": str(tmp_path)}
    code, out, err = await agentmgr("keys", "create", "--name", "ci", "--role", "admin", "--json", env=env)
    assert code == 0, err
    created = json.loads(out)
    key = created["key"]
    assert key.startswith("amk_") and created["role"] == "admin" and created["project"] == "*"

    async def accepted():
        try:
            await providers.ListProviders(P.ListProvidersRequest(), metadata=auth(key))
        except grpc.aio.AioRpcError as exc:
            raise AssertionError(exc.code()) from exc

    await eventually(accepted, timeout=5)

    code, out, err = await agentmgr("keys", "list", "--json", env=env)
    assert code == 0, err
    listed = json.loads(out)
    assert created["id"] in {r["id"] for r in listed}
    assert key not in out and hash_api_key(key) not in out

    code, out, err = await agentmgr("keys", "revoke", created["id"], env=env)
    assert code == 0, err
    revoked_at = time.monotonic()

    async def refused():
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await providers.ListProviders(P.ListProvidersRequest(), metadata=auth(key))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "revoked" in (info.value.details() or "")

    await eventually(refused, timeout=5)
    assert time.monotonic() - revoked_at < 5

    code, _, err = await agentmgr("keys", "revoke", "key_does_not_exist", env=env)
    assert code == 1 and "no key" in err


async def test_project_scoped_viewer_key_from_the_cli(providers, nats_server, tmp_path):
    env = {"NATS_URL": nats_server.url, "DATA_DIR": str(tmp_path)}
    code, out, err = await agentmgr(
        "keys", "create", "--name", "ro", "--project", "team", "--role", "viewer", "--json", env=env
    )
    assert code == 0, err
    key = json.loads(out)["key"]

    async def denied_write():
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await providers.CreateProvider(
                P.CreateProviderRequest(provider=P.Provider(name="nope", type="test", project="team")),
                metadata=auth(key),
            )
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED

    await eventually(denied_write, timeout=5)
    code, _, err = await agentmgr("keys", "create", "--name", "x", "--project", "Bad Project", env=env)
    assert code != 0 and "project" in err


async def test_key_records_never_hold_the_key(js):
    kv = await ensure_api_key_bucket(js, replicas=1)
    for name in await kv.keys():
        entry = await kv.get(name)
        assert b"amk_" not in (entry.value or b"")


async def test_gen_key_prints_a_usable_key(tmp_path):
    code, out, _ = await agentmgr("gen-key", env={"DATA_DIR": str(tmp_path)})
    assert code == 0
    Keyring.from_setting(out.strip())


async def test_cli_without_a_system_says_what_to_do(tmp_path):
    env = {"DATA_DIR": str(tmp_path), "NATS_URL": ""}
    code, _, err = await agentmgr("keys", "list", env=env)
    assert code != 0
    assert "NATS_URL" in err
