"""The README's quickstart is what a newcomer types: run it, exactly, against `make run`."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path

import jsonschema

from libs.common.embedded import free_port
from tests.e2e.test_run_command import RunningSystem

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def block(marker: str) -> str:
    match = re.search(rf"<!-- {marker} -->\n```sh\n(.*?)```\n<!-- /{marker} -->", README, re.S)
    assert match, f"README has no {marker} block"
    return match.group(1)


def test_readme_opens_with_the_two_commands():
    first = re.search(r"```sh\n(.*?)```", README, re.S)
    assert first is not None
    commands = [line.split("#")[0].strip() for line in first.group(1).splitlines()]
    assert commands[:2] == ["make run", "make test"]


async def bash(script: str, env: dict[str, str]) -> str:
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-euo",
        "pipefail",
        "-c",
        script,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_quickstart_and_grpc_call_work_as_written(tmp_path):
    system = RunningSystem(tmp_path / "data", free_port())
    key = await system.start()
    try:
        # Exactly the README, with the ports of this system instead of the defaults.
        script = (
            block("quickstart")
            .replace("http://127.0.0.1:8080", system.url)
            .replace("export KEY=amk_...", f"export KEY={key}")
        )
        output = await bash(script, {})
        run = json.loads(output.strip().splitlines()[-1])
        assert run["status"] == "succeeded", run
        task_schema = re.search(r'"response_schema": (\{.*?\}\}\})', script, re.S)
        assert task_schema is not None
        jsonschema.validate(run["output"], json.loads(task_schema.group(1)))

        grpc_script = block("grpc").replace("127.0.0.1:50051", f"127.0.0.1:{system.port}")
        listed = json.loads(await bash(grpc_script, {"KEY": key}))
        assert [p["name"] for p in listed["providers"]] == ["offline"]
    finally:
        await system.stop()
