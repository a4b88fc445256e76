"""`run_json` builds a run's JSON directly; it must equal protobuf's JSON mapping of it."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from libs.common.protojson import message_to_json
from services.agent_svc.domain import Run, RunError, RunErrorCode, RunStatus, Usage
from services.agent_svc.servicer import run_json, run_to_proto

T0 = dt.datetime(2026, 11, 24, 6, 6, 41, 855852, tzinfo=dt.UTC)
BASE = Run(
    id="run_abc",
    project="default",
    agent_id="agt_x",
    agent_version=3,
    task_id="tsk_y",
    task_version=7,
    variables={"text": "Lovely tea.", "n": 2, "nested": {"x": [1, 2.5, None, True]}},
    prompt="",
    status=RunStatus.QUEUED,
    create_time=T0,
)

CASES = {
    "queued": BASE,
    "running": replace(BASE, status=RunStatus.RUNNING, start_time=T0 + dt.timedelta(milliseconds=5)),
    "succeeded": replace(
        BASE,
        status=RunStatus.SUCCEEDED,
        start_time=T0.replace(microsecond=0),
        end_time=T0.replace(microsecond=120000),
        output={"sentiment": "positive", "score": 1.0, "topics": ["tea"], "deep": {"a": {"b": [0.1]}}},
        usage=Usage(2, 150, 20),
        attempts=2,
        latency_ms=1234,
    ),
    "failed": replace(
        BASE,
        status=RunStatus.FAILED,
        prompt="Say hi",
        variables={},
        end_time=T0 + dt.timedelta(seconds=1),
        error=RunError(RunErrorCode.PROVIDER_RATE_LIMITED, "the provider said: slow down"),
        usage=Usage(requests=1),
    ),
    "other timezone": replace(BASE, create_time=T0.astimezone(dt.timezone(dt.timedelta(hours=-5)))),
}


@pytest.mark.parametrize("run", CASES.values(), ids=CASES.keys())
def test_run_json_equals_the_protobuf_json_mapping(run: Run) -> None:
    assert run_json(run) == message_to_json(run_to_proto(run))
