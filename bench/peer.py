"""`make bench-peer`: the same structured-answer load through LiteLLM's proxy, beside ours.

Both proxies sit in front of the same local OpenAI-compatible stub. For agentmgr the
request is `POST /v1/runs` (the gateway → agent_svc → pydantic-ai → stub, with the
answer validated against the task's schema, stored, and announced as events); for
LiteLLM it is the `POST /v1/chat/completions` a client would send for the same answer
(the schema as a forced tool call; LiteLLM forwards it and validates nothing). LiteLLM
runs in its own virtualenv (`.bench-peer/`, made by the Make target) with one worker,
like our single gateway process.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import uvloop

from bench.end_to_end import LEVELS, SCHEMA, STUB_KEY, schedule, start, wait_http
from bench.harness import Result, http_session, interleaved, post_json
from libs.common.embedded import free_port

MASTER_KEY = "sk-litellm-bench-master-0000"


def _config(stub_url: str) -> str:
    return f"""
model_list:
  - model_name: bench
    litellm_params:
      model: openai/bench
      api_base: {stub_url}
      api_key: {STUB_KEY}
general_settings:
  master_key: {MASTER_KEY}
litellm_settings:
  telemetry: false
  drop_params: true
"""


async def run(litellm: str, *, duration_s: float = 6.0) -> list[Result]:
    stack = await start()
    try:
        workdir = Path(tempfile.mkdtemp(prefix="bench-peer-"))
        (workdir / "config.yaml").write_text(_config(stack.stub_url))
        port = free_port()
        # Found from here: the proxy starts in `workdir`, where a relative path means nothing.
        executable = Path(shutil.which(litellm) or litellm).absolute()
        proxy = subprocess.Popen(
            [executable, "--config", workdir / "config.yaml", "--port", str(port), "--num_workers", "1"],
            cwd=workdir,
            env={
                **os.environ,
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "LITELLM_TELEMETRY": "False",
                "LITELLM_LOG": "ERROR",
                "NO_DOCS": "True",
            },
            stdout=open(workdir / "litellm.log", "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        try:
            await wait_http(f"http://127.0.0.1:{port}/health/liveliness")
            key = stack.system.admin_key
            run_body = {
                "agent_id": stack.agent_id,
                "task_id": stack.task_id,
                "variables": {"text": "Lovely tea."},
            }
            chat_body = {
                "model": "bench",
                "messages": [
                    {"role": "system", "content": "Classify.\n\nAnswer with the schema."},
                    {"role": "user", "content": "Review: Lovely tea."},
                ],
                "tools": [{"type": "function", "function": {"name": "final_result", "parameters": SCHEMA}}],
                "tool_choice": "required",
            }
            results: list[Result] = []
            async with (
                http_session(stack.gateway_url) as ours,
                http_session(f"http://127.0.0.1:{port}") as theirs,
            ):

                async def agentmgr(_: int) -> None:
                    status, answer = await post_json(ours, "/v1/runs", run_body, key=key)
                    if status != 201 or answer["status"] != "succeeded":
                        raise RuntimeError(str(answer))

                async def peer(_: int) -> None:
                    status, answer = await post_json(
                        theirs, "/v1/chat/completions", chat_body, key=MASTER_KEY
                    )
                    if status != 200:
                        raise RuntimeError(str(answer))

                for concurrency in LEVELS:
                    seconds, rounds = schedule(concurrency, duration_s)  # as `make bench`: longer at c=1
                    results += await interleaved(
                        [("agentmgr POST /v1/runs", agentmgr), ("LiteLLM proxy chat completion", peer)],
                        concurrency=concurrency,
                        duration_s=seconds,
                        rounds=rounds,
                    )
            return results
        finally:
            proxy.terminate()
            proxy.wait(15)
    finally:  # also when the proxy cannot be started: no process is left behind
        stack.stop()


def report(results: list[Result]) -> None:
    for result in results:
        print(result.row())
    by = {(r.label.split()[0], r.concurrency): r for r in results}
    for concurrency in LEVELS:
        ours, theirs = by[("agentmgr", concurrency)], by[("LiteLLM", concurrency)]
        print(
            f"  c={concurrency:<3} p50 agentmgr {ours.percentile(0.5):7.2f} ms "
            f"vs LiteLLM {theirs.percentile(0.5):7.2f} ms; "
            f"throughput agentmgr {ours.rps:6.0f}/s vs LiteLLM {theirs.rps:6.0f}/s"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--litellm", required=True, help="the litellm executable")
    args = parser.parse_args()
    print("== agentmgr vs LiteLLM proxy, same stub, same machine ==")
    report(uvloop.run(run(args.litellm)))


if __name__ == "__main__":
    main()
