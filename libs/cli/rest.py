"""`agentmgr providers|agents|tasks|runs …`: the REST API from the command line.

The gateway URL comes from `--url`, `AGENTMGR_URL`, or the running `make run`
(`.agentmgr/runtime.json`); the key from `--api-key`, `AGENTMGR_API_KEY`, or the local
admin key `make run` generated. Wherever an id is asked for, a name works too. Output
is a table, or the API's JSON with `--json`. Errors print the code, the message and
the bad fields, and exit with status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from libs.cli.local import LocalState, data_dir

__all__ = ["add_commands", "run_command"]

_PREFIX = {"providers": "prv_", "agents": "agt_", "tasks": "tsk_", "runs": "run_"}


class CliError(Exception):
    """A message for the user; exit status 1."""


class Api:
    """A thin JSON client of the gateway."""

    def __init__(self, url: str, key: str) -> None:
        self._client = httpx.Client(
            base_url=url.rstrip("/"), headers={"authorization": f"Bearer {key}"}, timeout=660, trust_env=False
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise CliError(
                f"cannot reach the gateway at {self._client.base_url} ({type(exc).__name__})"
            ) from None
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                raise CliError(f"HTTP {response.status_code}") from None
            lines = [f"{error['code']}: {error['message']}"]
            for detail in error.get("details", []):
                line = f"{detail.get('field')}: {detail.get('description')}"
                if detail.get("type") == "field_violation" and line != error["message"]:
                    lines.append(f"  {line}")
            if "retry-after" in response.headers:
                lines.append(f"  retry after {response.headers['retry-after']} s")
            raise CliError("\n".join(lines))
        return response.json()

    def resolve(self, collection: str, value: str) -> str:
        """An id from an id or a name."""
        if value.startswith(_PREFIX[collection]):
            return value
        token = ""
        while True:
            page = self.request("GET", f"/v1/{collection}", params={"page_size": 1000, "page_token": token})
            for item in page[collection]:
                if item.get("name") == value:
                    return str(item["id"])
            token = page.get("next_page_token", "")
            if not token:
                raise CliError(f"no {collection[:-1]} named '{value}'")


def _connection(args: argparse.Namespace) -> Api:
    state = LocalState(data_dir())
    url = args.url or os.environ.get("AGENTMGR_URL") or str(state.runtime().get("http_url", ""))
    if not url:
        raise CliError("no gateway URL: pass --url, set AGENTMGR_URL, or start `make run`")
    key = args.api_key or os.environ.get("AGENTMGR_API_KEY") or state.setting("BOOTSTRAP_ADMIN_KEY")
    if not key:
        raise CliError("no API key: pass --api-key or set AGENTMGR_API_KEY")
    return Api(url, key)


# --- output ------------------------------------------------------------------------------

Column = tuple[str, Callable[[dict[str, Any]], object]]

_COLUMNS: dict[str, list[Column]] = {
    "providers": [
        ("ID", lambda r: r["id"]),
        ("NAME", lambda r: r["name"]),
        ("TYPE", lambda r: r["type"]),
        ("STATUS", lambda r: r["validation"]["status"]),
        ("KEY", lambda r: r["api_key_hint"] or "-"),
        ("MODELS", lambda r: len(r["validation"]["models"])),
    ],
    "agents": [
        ("ID", lambda r: r["id"]),
        ("NAME", lambda r: r["name"]),
        ("VERSION", lambda r: r["version"]),
        ("PROVIDER", lambda r: r["provider_id"]),
        ("MODEL", lambda r: r["model"]),
    ],
    "tasks": [
        ("ID", lambda r: r["id"]),
        ("NAME", lambda r: r["name"]),
        ("VERSION", lambda r: r["version"]),
        ("VARIABLES", lambda r: ",".join(r["variables"]) or "-"),
    ],
    "runs": [
        ("ID", lambda r: r["id"]),
        ("STATUS", lambda r: r["status"]),
        ("AGENT", lambda r: f"{r['agent_id']}@{r['agent_version']}"),
        ("TASK", lambda r: f"{r['task_id']}@{r['task_version']}"),
        ("ATTEMPTS", lambda r: r["attempts"]),
        ("LATENCY", lambda r: f"{r['latency_ms']} ms"),
        ("ERROR", lambda r: (r.get("error") or {}).get("code", "-")),
    ],
}


def _table(collection: str, rows: Sequence[dict[str, Any]]) -> str:
    columns = _COLUMNS[collection]
    cells = [[name for name, _ in columns]] + [[str(get(row)) for _, get in columns] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def _show(args: argparse.Namespace, collection: str, data: Any) -> None:
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return
    if isinstance(data, dict) and collection in data:
        print(_table(collection, data[collection]))
        if data.get("next_page_token"):
            print(f"(more: --page-token {data['next_page_token']})")
        return
    print(_table(collection, [data]))
    if collection == "runs" and data.get("output") is not None:
        print("output:")
        print(json.dumps(data["output"], indent=2, ensure_ascii=False))
    if collection == "runs" and data.get("error"):
        print(f"error: {data['error']['code']}: {data['error']['message']}")


# --- argument helpers ----------------------------------------------------------------------


def _json_arg(value: str) -> Any:
    """JSON text, or @file with JSON."""
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CliError(f"not valid JSON: {exc}") from None


def _pairs(items: Sequence[str] | None, *, what: str) -> dict[str, str]:
    result = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise CliError(f"{what} must be key=value, not '{item}'")
        result[key] = value
    return result


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for name in ("temperature", "max_tokens", "top_p", "timeout_s"):
        value = getattr(args, name, None)
        if value is not None:
            settings[name] = value
    return settings


# --- commands ----------------------------------------------------------------------------


def _providers(api: Api, args: argparse.Namespace) -> Any:
    match args.action:
        case "list":
            params = {
                "project": args.project or "",
                "type": args.type or "",
                "validation_status": args.status or "",
            }
            return api.request("GET", "/v1/providers", params={**params, "page_size": 1000})
        case "get":
            return api.request("GET", f"/v1/providers/{api.resolve('providers', args.id)}")
        case "create":
            body = {
                "name": args.name,
                "type": args.type,
                "project": args.project or "",
                "base_url": args.base_url or "",
            }
            if args.api_key_stdin:
                body["api_key"] = sys.stdin.readline().strip()
            if args.config:
                body["config"] = _json_arg(args.config)
            return api.request("POST", "/v1/providers", json=body)
        case "update":
            body = {k: v for k, v in (("name", args.name), ("base_url", args.base_url)) if v is not None}
            if args.api_key_stdin:
                body["api_key"] = sys.stdin.readline().strip()
            if args.config:
                body["config"] = _json_arg(args.config)
            return api.request("PATCH", f"/v1/providers/{api.resolve('providers', args.id)}", json=body)
        case "delete":
            target = api.resolve("providers", args.id)
            return api.request("DELETE", f"/v1/providers/{target}", params={"force": str(args.force).lower()})
        case _:
            return api.request("POST", f"/v1/providers/{api.resolve('providers', args.id)}:validate")


def _agents(api: Api, args: argparse.Namespace) -> Any:
    match args.action:
        case "list":
            return api.request("GET", "/v1/agents", params={"project": args.project or "", "page_size": 1000})
        case "get":
            return api.request("GET", f"/v1/agents/{api.resolve('agents', args.id)}")
        case "versions":
            return api.request("GET", f"/v1/agents/{api.resolve('agents', args.id)}/versions")
        case "create":
            body: dict[str, Any] = {
                "name": args.name,
                "provider_id": api.resolve("providers", args.provider),
                "model": args.model,
                "project": args.project or "",
                "system_prompt": args.system_prompt or "",
                "model_settings": _settings(args),
                "labels": _pairs(args.label, what="--label"),
            }
            if args.retries is not None:
                body["output_retries"] = args.retries
            return api.request("POST", "/v1/agents", json=body)
        case "update":
            body = {
                k: v
                for k, v in (("model", args.model), ("system_prompt", args.system_prompt))
                if v is not None
            }
            if args.provider:
                body["provider_id"] = api.resolve("providers", args.provider)
            if _settings(args):
                body["model_settings"] = _settings(args)
            if args.retries is not None:
                body["output_retries"] = args.retries
            return api.request("PATCH", f"/v1/agents/{api.resolve('agents', args.id)}", json=body)
        case _:
            return api.request("DELETE", f"/v1/agents/{api.resolve('agents', args.id)}")


def _tasks(api: Api, args: argparse.Namespace) -> Any:
    match args.action:
        case "list":
            return api.request("GET", "/v1/tasks", params={"project": args.project or "", "page_size": 1000})
        case "get":
            return api.request("GET", f"/v1/tasks/{api.resolve('tasks', args.id)}")
        case "versions":
            return api.request("GET", f"/v1/tasks/{api.resolve('tasks', args.id)}/versions")
        case "create":
            body: dict[str, Any] = {
                "name": args.name,
                "project": args.project or "",
                "instructions": args.instructions or "",
                "prompt_template": args.template or "",
                "response_schema": _json_arg(args.schema),
            }
            return api.request("POST", "/v1/tasks", json=body)
        case "update":
            body = {
                k: v
                for k, v in (("instructions", args.instructions), ("prompt_template", args.template))
                if v is not None
            }
            if args.schema:
                body["response_schema"] = _json_arg(args.schema)
            return api.request("PATCH", f"/v1/tasks/{api.resolve('tasks', args.id)}", json=body)
        case _:
            return api.request("DELETE", f"/v1/tasks/{api.resolve('tasks', args.id)}")


def _runs(api: Api, args: argparse.Namespace) -> Any:
    match args.action:
        case "list":
            params = {
                "agent_id": api.resolve("agents", args.agent) if args.agent else "",
                "task_id": api.resolve("tasks", args.task) if args.task else "",
                "status": args.status or "",
                "page_size": args.limit,
            }
            return api.request("GET", "/v1/runs", params=params)
        case "get":
            return api.request("GET", f"/v1/runs/{args.id}")
        case _:
            variables: dict[str, Any] = dict(_pairs(args.var, what="--var"))
            if args.vars:
                variables.update(_json_arg(args.vars))
            body = {
                "agent_id": api.resolve("agents", args.agent),
                "task_id": api.resolve("tasks", args.task),
                "variables": variables,
                "prompt": args.prompt or "",
                "wait": not args.no_wait,
            }
            return api.request("POST", "/v1/runs", json=body)


_HANDLERS = {"providers": _providers, "agents": _agents, "tasks": _tasks, "runs": _runs}


def add_commands(commands: Any) -> None:
    """Add the resource subcommands to the `agentmgr` parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="gateway URL (default: AGENTMGR_URL or the running make run)")
    common.add_argument("--api-key", help="API key (default: AGENTMGR_API_KEY or the local admin key)")
    common.add_argument("--json", action="store_true", help="print the API's JSON")

    def group(name: str, help_text: str) -> Any:
        parser = commands.add_parser(name, help=help_text)
        return parser.add_subparsers(dest="action", required=True)

    providers = group("providers", "providers (LLM endpoints and their keys)")
    p = providers.add_parser("list", parents=[common])
    p.add_argument("--project")
    p.add_argument("--type")
    p.add_argument("--status", help="validation status")
    for action in ("get", "delete", "validate"):
        p = providers.add_parser(action, parents=[common])
        p.add_argument("id", help="id or name")
        if action == "delete":
            p.add_argument("--force", action="store_true", help="even if agents use it")
    for action in ("create", "update"):
        p = providers.add_parser(action, parents=[common])
        if action == "update":
            p.add_argument("id", help="id or name")
        p.add_argument("--name", required=action == "create")
        if action == "create":
            p.add_argument("--type", required=True)
            p.add_argument("--project")
        p.add_argument("--base-url")
        p.add_argument("--api-key-stdin", action="store_true", help="read the provider's key from stdin")
        p.add_argument("--config", help="JSON, or @file")

    agents = group("agents", "agents (provider + model + prompt + settings)")
    p = agents.add_parser("list", parents=[common])
    p.add_argument("--project")
    for action in ("get", "delete", "versions"):
        agents.add_parser(action, parents=[common]).add_argument("id", help="id or name")
    for action in ("create", "update"):
        p = agents.add_parser(action, parents=[common])
        if action == "update":
            p.add_argument("id", help="id or name")
        else:
            p.add_argument("--name", required=True)
            p.add_argument("--project")
            p.add_argument("--label", action="append", help="key=value (repeatable)")
        p.add_argument("--provider", required=action == "create", help="provider id or name")
        p.add_argument("--model", required=action == "create")
        p.add_argument("--system-prompt")
        p.add_argument("--temperature", type=float)
        p.add_argument("--max-tokens", type=int)
        p.add_argument("--top-p", type=float)
        p.add_argument("--timeout", dest="timeout_s", type=float, help="seconds for a whole run")
        p.add_argument("--retries", type=int, help="output retries (0-10)")

    tasks = group("tasks", "tasks (instructions, prompt template, answer schema)")
    p = tasks.add_parser("list", parents=[common])
    p.add_argument("--project")
    for action in ("get", "delete", "versions"):
        tasks.add_parser(action, parents=[common]).add_argument("id", help="id or name")
    for action in ("create", "update"):
        p = tasks.add_parser(action, parents=[common])
        if action == "update":
            p.add_argument("id", help="id or name")
        else:
            p.add_argument("--name", required=True)
            p.add_argument("--project")
        p.add_argument(
            "--schema", required=action == "create", help="the response JSON Schema: JSON, or @file"
        )
        p.add_argument("--template", help="prompt template with {variables}")
        p.add_argument("--instructions")

    runs = group("runs", "runs (an agent on a task)")
    p = runs.add_parser("create", parents=[common])
    p.add_argument("--agent", required=True, help="agent id or name")
    p.add_argument("--task", required=True, help="task id or name")
    p.add_argument("--var", action="append", help="name=value (repeatable)")
    p.add_argument("--vars", help="variables as a JSON object, or @file")
    p.add_argument("--prompt", help="instead of the template")
    p.add_argument("--no-wait", action="store_true", help="return the queued run at once")
    p = runs.add_parser("list", parents=[common])
    p.add_argument("--agent")
    p.add_argument("--task")
    p.add_argument("--status")
    p.add_argument("--limit", type=int, default=20)
    runs.add_parser("get", parents=[common]).add_argument("id")


def run_command(args: argparse.Namespace) -> int:
    """Run a resource subcommand."""
    try:
        api = _connection(args)
        data = _HANDLERS[args.command](api, args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _show(args, args.command, data)
    return 0
