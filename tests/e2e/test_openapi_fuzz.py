"""A bounded property-based run over the OpenAPI document (schemathesis) with a valid key.

The system runs as `make run` runs it (separate processes), because schemathesis makes
blocking calls. Checks: no 5xx, every status code, content type and body documented.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from libs.common.embedded import free_port
from tests.e2e.test_run_command import RunningSystem

pytestmark = pytest.mark.asyncio
ROOT = Path(__file__).resolve().parents[2]


async def test_schemathesis_finds_no_server_errors_and_no_undocumented_responses(tmp_path):
    system = RunningSystem(tmp_path / "data", free_port())
    key = await system.start()
    try:
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "st"),
            "run",
            f"{system.url}/openapi.json",
            "--header",
            f"Authorization: Bearer {key}",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--max-examples",
            "15",
            "--seed",
            "20261124",
            "--phases",
            "examples,coverage,fuzzing",
            "--request-timeout",
            "30",
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), 600)
        text = output.decode(errors="replace")
        assert process.returncode == 0, text[-6000:]
        assert " passed" in text
    finally:
        await system.stop()
