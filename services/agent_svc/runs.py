"""Runs (DESIGN §4): render the prompt, run the agent, store the answer and the events.

A run pins the agent and task versions it starts with. `CreateRun` and `StreamRun`
execute in the serving process; `StartRun` stores a queued run and a job in one
transaction, and whichever replica's `RunWorker` takes the job executes it — so a
started run proceeds with nobody connected and survives the loss of a replica (the
job is redelivered). Execution is shielded from the caller: a client that goes away
does not cancel a run half-way; it finishes and is stored.

A provider failure never escapes as an exception: every outcome is a finished run,
`succeeded` with an output that validates against the task's schema, or `failed` with
a stable `RunErrorCode` and a message scrubbed of secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

import nats.errors
import pydantic_core
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic_ai import Agent as PydanticAgent
from pydantic_ai import capture_run_messages
from pydantic_ai import exceptions as pai_errors
from pydantic_ai.messages import (
    AgentStreamEvent,
    ModelMessage,
    ModelResponse,
    PartDeltaEvent,
    PartStartEvent,
    ToolCallPart,
    ToolCallPartDelta,
)
from pydantic_ai.tools import RunContext
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.common.auth import Principal
from libs.common.clock import utcnow
from libs.common.db import driver_connection
from libs.common.errors import DomainError, InvalidArgument, NotFound, Unavailable
from libs.common.ids import new_id
from libs.common.jsonvalue import JsonObject, fingerprint
from libs.common.logging import get_logger, redactor
from libs.common.messaging import JOBS_STREAM, JOBS_SUBJECT_PREFIX
from libs.common.names import validate_name
from libs.common.outbox import Outbox, OutboxMessage
from libs.common.pagination import decode_page_token, encode_page_token, page_size
from services.agent_svc.domain import (
    PROMPT_MAX_CHARS,
    VARIABLES_MAX_BYTES,
    Agent,
    Run,
    RunError,
    RunErrorCode,
    RunStatus,
    Task,
    Usage,
    render_prompt,
)
from services.agent_svc.metrics import observe_finished_run
from services.agent_svc.models import HttpClients, build_model, model_settings
from services.agent_svc.providers import ProviderClient
from services.agent_svc.registry import Registry
from services.agent_svc.repository import AgentRepository, RunRepository, TaskRepository, current_versions
from services.agent_svc.schema_compiler import CompiledSchema, SchemaCompiler, SchemaOutput, ordered_hash

__all__ = [
    "RUN_JOB_SUBJECT",
    "BuiltAgent",
    "RunEngine",
    "RunKey",
    "RunRequest",
    "RunService",
    "RunWorker",
    "StaleRunReaper",
]

RUN_JOB_SUBJECT = f"{JOBS_SUBJECT_PREFIX}.runs.execute"
_log = get_logger(__name__)
_PARTIAL_INTERVAL_S = 0.05
_EVENT_OUTPUT_MAX_BYTES = 256 * 1024
RECORD_RUNNING_AFTER_S = 0.1
"""A `CreateRun` still executing after this long is recorded as `running` (see `create`)."""


@dataclass(frozen=True, slots=True)
class RunKey:
    """What a built agent depends on; the registry's key."""

    agent_id: str
    agent_version: int
    task_id: str
    task_version: int
    provider_id: str


class BuiltAgent:
    """A pydantic-ai agent ready to run, with the compiled schema of its output."""

    __slots__ = ("__weakref__", "agent", "compiled", "timeout_s")

    def __init__(
        self, agent: PydanticAgent[None, SchemaOutput], compiled: CompiledSchema, timeout_s: float
    ) -> None:
        self.agent = agent
        self.compiled = compiled
        self.timeout_s = timeout_s


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRequest:
    """What to run (the shared input of CreateRun, StartRun and StreamRun)."""

    agent_id: str
    agent_version: int
    task_id: str
    task_version: int
    variables: JsonObject
    prompt: str


@dataclass(frozen=True, slots=True)
class _Outcome:
    status: RunStatus
    output: JsonObject | None
    error: RunError | None
    usage: Usage
    attempts: int


_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")
_T = TypeVar("_T")


class _Versions(Generic[_K, _V]):
    """Immutable versions, cached (an agent or task version never changes)."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._items: OrderedDict[_K, _V] = OrderedDict()
        self._capacity = capacity

    def get(self, key: _K) -> _V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: _K, value: _V) -> None:
        self._items[key] = value
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)

    def discard(self, key: _K) -> None:
        self._items.pop(key, None)


Heads = tuple[int, int]
"""The current versions of a run's agent and task when it was prepared."""


class _HeadsMoved(Exception):
    """The agent or task changed (or went) between preparing a run and storing it."""


def _scrub(message: str, limit: int = 500) -> str:
    text = redactor.scrub(message.split("\n", 1)[0])
    return text if len(text) <= limit else text[: limit - 1] + "…"


def classify_failure(exc: BaseException) -> RunError:
    """The stable code and a secret-free message for whatever ended a run."""
    code: RunErrorCode
    match exc:
        case pai_errors.RunTimedOut() | TimeoutError():
            return RunError(RunErrorCode.RUN_TIMEOUT, "the run did not finish within the agent's timeout_s")
        case pai_errors.ModelAuthenticationError():
            code = RunErrorCode.PROVIDER_AUTH_FAILED
        case pai_errors.ModelRateLimitError() | pai_errors.ModelQuotaExceededError():
            code = RunErrorCode.PROVIDER_RATE_LIMITED
        case pai_errors.ModelTimeoutError() | pai_errors.ModelRequestTimeout():
            code = RunErrorCode.PROVIDER_TIMEOUT
        case pai_errors.ModelConnectionError():
            code = RunErrorCode.PROVIDER_UNREACHABLE
        case pai_errors.ModelNotFoundError():
            code = RunErrorCode.MODEL_NOT_FOUND
        case pai_errors.ModelRequestRejectedError():
            code = RunErrorCode.PROVIDER_REJECTED
        case pai_errors.ModelAPIError():
            code = RunErrorCode.PROVIDER_ERROR
        case pai_errors.UnexpectedModelBehavior():
            return RunError(
                RunErrorCode.OUTPUT_INVALID,
                "the model gave no answer valid against the task's schema within output_retries: "
                + _scrub(exc.message),
            )
        case NotFound():
            return RunError(RunErrorCode.PROVIDER_NOT_FOUND, _scrub(exc.message))
        case DomainError():
            return RunError(RunErrorCode.UNAVAILABLE, _scrub(exc.message))
        case _:
            _log.error("run_internal_error", error=type(exc).__name__, exc_info=exc)
            return RunError(RunErrorCode.INTERNAL, "internal error")
    status = getattr(exc, "status_code", None)
    detail = f" (HTTP {status})" if isinstance(status, int) else ""
    return RunError(code, _scrub(f"{exc}{detail}"))


def _attempts(messages: list[ModelMessage]) -> int:
    return sum(1 for m in messages if isinstance(m, ModelResponse))


PartialSink = Callable[[JsonObject], Awaitable[None]]


class _PartialOutput:
    """Turns the output tool's streamed argument deltas into partial JSON objects."""

    def __init__(self, sink: PartialSink) -> None:
        self._sink = sink
        self._buffers: dict[int, str] = {}
        self._last: JsonObject | None = None
        self._last_sent = 0.0

    async def handle(self, ctx: RunContext[None], events: Any) -> None:
        self._buffers.clear()  # a new model response (a retry starts over)
        async for event in events:
            await self._event(event)

    async def _event(self, event: AgentStreamEvent) -> None:
        if isinstance(event, PartStartEvent) and isinstance(event.part, ToolCallPart):
            args = event.part.args
            self._buffers[event.index] = args if isinstance(args, str) else json.dumps(args or {})
        elif isinstance(event, PartDeltaEvent) and isinstance(event.delta, ToolCallPartDelta):
            delta = event.delta.args_delta
            if isinstance(delta, str):
                self._buffers[event.index] = self._buffers.get(event.index, "") + delta
            elif isinstance(delta, dict):
                self._buffers[event.index] = json.dumps(delta)
            else:
                return
        else:
            return
        try:
            parsed = pydantic_core.from_json(self._buffers[event.index], allow_partial=True)
        except ValueError:
            return
        now = time.monotonic()
        if isinstance(parsed, dict) and parsed != self._last and now - self._last_sent >= _PARTIAL_INTERVAL_S:
            self._last, self._last_sent = parsed, now
            await self._sink(parsed)


class RunEngine:
    """Builds agents (through the registry) and executes them."""

    def __init__(
        self,
        *,
        compiler: SchemaCompiler,
        providers: ProviderClient,
        http: HttpClients,
        agents: Callable[[str, int], Awaitable[Agent]],
        tasks: Callable[[str, int], Awaitable[Task]],
        capacity: int,
    ) -> None:
        self._compiler = compiler
        self._providers = providers
        self._http = http
        self._agents = agents
        self._tasks = tasks
        self.registry: Registry[RunKey, BuiltAgent] = Registry(build=self._build, capacity=capacity)

    async def _build(self, key: RunKey) -> BuiltAgent:
        agent = await self._agents(key.agent_id, key.agent_version)
        task = await self._tasks(key.task_id, key.task_version)
        # By ordered hash: the model is shown this task's schema in this task's key order.
        schema = task.response_schema
        compiled = self._compiler.lookup(ordered_hash(schema)) or self._compiler.compile(schema)
        credential = await self._providers.credential(agent.provider_id)
        model = build_model(credential, agent.model, schema=compiled, http=self._http)
        pai_agent: PydanticAgent[None, SchemaOutput] = PydanticAgent(
            model,
            # Named: without a name pydantic-ai walks the caller's frames on every run to
            # infer one from a variable holding the agent, and never finds one here.
            name=agent.name,
            output_type=compiled.output_type,
            system_prompt=agent.system_prompt or (),
            instructions=task.instructions or None,
            model_settings=model_settings(agent.model_settings, credential.type),
            retries={"output": agent.output_retries, "tools": 0},
            defer_model_check=True,
        )
        return BuiltAgent(pai_agent, compiled, agent.model_settings.run_timeout_s)

    async def execute(self, key: RunKey, prompt: str, *, on_partial: PartialSink | None = None) -> _Outcome:
        """Run once; every failure becomes a failed outcome."""
        with capture_run_messages() as messages:
            try:
                built = await self.registry.get(key)
                handler = _PartialOutput(on_partial).handle if on_partial is not None else None
                async with asyncio.timeout(built.timeout_s):
                    result = await built.agent.run(prompt, event_stream_handler=handler)
                output = built.compiled.dump(result.output)
                usage = result.usage
                return _Outcome(
                    RunStatus.SUCCEEDED,
                    output,
                    None,
                    Usage(usage.requests, usage.input_tokens, usage.output_tokens),
                    _attempts(result.all_messages()),
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure is a failed run with a stable code
                return _Outcome(
                    RunStatus.FAILED,
                    None,
                    classify_failure(exc),
                    Usage(requests=_attempts(messages)),
                    _attempts(messages),
                )


def _request_fingerprint(request: RunRequest) -> str:
    body = {
        "agent_id": request.agent_id,
        "agent_version": request.agent_version,
        "task_id": request.task_id,
        "task_version": request.task_version,
        "variables": request.variables,
        "prompt": request.prompt,
    }
    return fingerprint(body)


class RunService:
    """The run use cases."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        runs: RunRepository,
        agents: AgentRepository,
        tasks: TaskRepository,
        outbox: Outbox,
        run_engine: RunEngine | None,
        encode: Callable[[Run], JsonObject],
        record_running_after_s: float = RECORD_RUNNING_AFTER_S,
    ) -> None:
        self._engine = engine
        self._record_running_after_s = record_running_after_s
        self._runs = runs
        self._agents = agents
        self._tasks = tasks
        self._outbox = outbox
        self._run_engine = run_engine
        self._encode = encode
        self._agent_versions: _Versions[tuple[str, int], Agent] = _Versions()
        self._task_versions: _Versions[tuple[str, int], Task] = _Versions()
        # Which version is current, as last seen: a hint, checked by the run's insert.
        self._heads: _Versions[tuple[str, str], int] = _Versions()
        self._background: set[asyncio.Task[Run]] = set()

    def attach_engine(self, run_engine: RunEngine) -> None:
        """Wire the engine in (it needs this service's version lookups)."""
        self._run_engine = run_engine

    @property
    def in_progress(self) -> int:
        """Runs this process is executing (a metric)."""
        return len(self._background)

    # --- versions -----------------------------------------------------------------

    def forget_head(self, collection: str, resource_id: str) -> None:
        """An agent or task changed or went (here, or on another replica: the events)."""
        self._heads.discard((collection, resource_id))

    async def agent_version(self, agent_id: str, version: int) -> Agent:
        """An agent at a version (0: current); NOT_FOUND when there is none."""
        if version:
            cached = self._agent_versions.get((agent_id, version))
            if cached is not None:
                return cached
        async with driver_connection(self._engine) as conn:
            agent = await self._agents.get(conn, agent_id, version=version)
        if agent is None:
            raise NotFound(f"agent '{agent_id}'" + (f" version {version}" if version else "") + " not found")
        self._agent_versions.put((agent.id, agent.version), agent)
        return agent

    async def task_version(self, task_id: str, version: int) -> Task:
        """A task at a version (0: current); NOT_FOUND when there is none."""
        if version:
            cached = self._task_versions.get((task_id, version))
            if cached is not None:
                return cached
        async with driver_connection(self._engine) as conn:
            task = await self._tasks.get(conn, task_id, version=version)
        if task is None:
            raise NotFound(f"task '{task_id}'" + (f" version {version}" if version else "") + " not found")
        self._task_versions.put((task.id, task.version), task)
        return task

    def _pinned_cached(self, request: RunRequest) -> tuple[Agent, Task, Heads] | None:
        agent_head = self._heads.get(("agents", request.agent_id))
        task_head = self._heads.get(("tasks", request.task_id))
        if agent_head is None or task_head is None:
            return None
        agent_v, task_v = request.agent_version or agent_head, request.task_version or task_head
        if agent_v > agent_head or task_v > task_head:
            return None  # perhaps newer than the hint: the database says
        agent = self._agent_versions.get((request.agent_id, agent_v))
        task = self._task_versions.get((request.task_id, task_v))
        if agent is None or task is None:
            return None
        return agent, task, (agent_head, task_head)

    async def _pinned(self, request: RunRequest, *, fresh: bool) -> tuple[Agent, Task, Heads]:
        """The agent and task versions a new run uses, and the current versions they came with.

        Versions are immutable, so they are cached. Which one is current comes from a hint
        (kept from the last look-up, dropped on the agents' and tasks' change events) or,
        `fresh` or without one, from the database in one round trip. The run's insert
        stores it only if those were the current versions when the run began, so a run
        right after an update, on any replica, uses the update; when the hint was stale,
        it starts over.
        """
        if not fresh:
            cached = self._pinned_cached(request)
            if cached is not None:
                return cached
        async with driver_connection(self._engine) as conn:
            agent_head, task_head = await current_versions(conn, request.agent_id, request.task_id)
            agent_v = request.agent_version or agent_head or 0
            if agent_head is None or agent_v > agent_head:
                raise NotFound(
                    f"agent '{request.agent_id}'"
                    + (f" version {request.agent_version}" if request.agent_version else "")
                    + " not found"
                )
            task_v = request.task_version or task_head or 0
            if task_head is None or task_v > task_head:
                raise NotFound(
                    f"task '{request.task_id}'"
                    + (f" version {request.task_version}" if request.task_version else "")
                    + " not found"
                )
            agent = self._agent_versions.get((request.agent_id, agent_v))
            if agent is None:
                agent = await self._agents.get(conn, request.agent_id, version=agent_v)
                if agent is None:  # deleted meanwhile
                    raise NotFound(f"agent '{request.agent_id}' not found")
                self._agent_versions.put((agent.id, agent.version), agent)
            task = self._task_versions.get((request.task_id, task_v))
            if task is None:
                task = await self._tasks.get(conn, request.task_id, version=task_v)
                if task is None:
                    raise NotFound(f"task '{request.task_id}' not found")
                self._task_versions.put((task.id, task.version), task)
        self._heads.put(("agents", request.agent_id), agent_head)
        self._heads.put(("tasks", request.task_id), task_head)
        return agent, task, (agent_head, task_head)

    # --- helpers ------------------------------------------------------------------

    def _event(self, run: Run, actor: str) -> OutboxMessage:
        data = self._encode(run)
        if run.output is not None and len(json.dumps(run.output)) > _EVENT_OUTPUT_MAX_BYTES:
            # NATS messages are capped (1 MiB by default); the run itself keeps the output.
            data = {**data, "output": None, "output_omitted": True}
        return self._outbox.event(
            collection="runs",
            resource="run",
            verb=run.status.value,
            resource_id=run.id,
            project=run.project,
            actor=actor,
            data=data,
        )

    async def _prepare(
        self, principal: Principal, request: RunRequest, *, fresh: bool
    ) -> tuple[Agent, Task, str, Heads]:
        if not request.agent_id:
            raise InvalidArgument.for_field("input.agent_id", "required")
        if not request.task_id:
            raise InvalidArgument.for_field("input.task_id", "required")
        for name, value in (("agent_version", request.agent_version), ("task_version", request.task_version)):
            if value < 0:
                raise InvalidArgument.for_field(f"input.{name}", "must not be negative")
        if len(json.dumps(request.variables)) > VARIABLES_MAX_BYTES:
            raise InvalidArgument.for_field(
                "input.variables", f"must be at most {VARIABLES_MAX_BYTES} bytes of JSON"
            )
        if len(request.prompt) > PROMPT_MAX_CHARS:
            raise InvalidArgument.for_field("input.prompt", f"must be at most {PROMPT_MAX_CHARS} characters")
        agent, task, heads = await self._pinned(request, fresh=fresh)
        if not principal.can_see(agent.project):
            raise NotFound(f"agent '{request.agent_id}' not found")
        if not principal.can_see(task.project):
            raise NotFound(f"task '{request.task_id}' not found")
        if agent.project != task.project:
            raise InvalidArgument.for_field(
                "input.task_id", f"the task is in project '{task.project}', the agent in '{agent.project}'"
            )
        principal.require_project(agent.project)
        if request.prompt:
            if request.variables:
                raise InvalidArgument.for_field(
                    "input.variables", "give either a prompt or variables, not both"
                )
            prompt = request.prompt
        elif task.prompt_template:
            prompt = render_prompt(task.prompt_template, request.variables)
        else:
            raise InvalidArgument.for_field("input.prompt", "required: the task has no prompt_template")
        return agent, task, prompt, heads

    async def _stored_new(
        self,
        principal: Principal,
        request: RunRequest,
        store: Callable[[Agent, Task, str, Heads], Awaitable[_T]],
    ) -> _T:
        """`store` a new run with the versions current at its start (again if a hint was stale)."""
        for fresh in (False, True, True):
            agent, task, prompt, heads = await self._prepare(principal, request, fresh=fresh)
            try:
                return await store(agent, task, prompt, heads)
            except _HeadsMoved:
                continue
        raise Unavailable("the agent or task kept changing while the run was being stored; try again")

    def _new_run(self, agent: Agent, task: Task, request: RunRequest, status: RunStatus) -> Run:
        now = utcnow()
        return Run(
            id=new_id("run"),
            project=agent.project,
            agent_id=agent.id,
            agent_version=agent.version,
            task_id=task.id,
            task_version=task.version,
            variables=request.variables,
            prompt=request.prompt,
            status=status,
            create_time=now,
            start_time=now if status is RunStatus.RUNNING else None,
        )

    async def _insert(
        self,
        run: Run,
        heads: Heads,
        *,
        actor: str,
        request_id: str,
        fingerprint: str,
        job: OutboxMessage | None = None,
        passed: tuple[Run, ...] = (),
    ) -> Run:
        """Store a new run and its event; for a repeated request_id, the earlier run.

        `passed`: states the run went through before this one, unstored; their events
        go first. `_HeadsMoved` when `heads` were not the agent's and task's current
        versions at the run's create_time (a stale hint).
        """
        if len(request_id) > 128:
            raise InvalidArgument.for_field("request_id", "must be at most 128 characters")
        messages = (
            *(self._event(state, actor) for state in passed),
            self._event(run, actor),
            *([job] if job else []),
        )
        async with driver_connection(self._engine) as conn:
            if request_id:
                earlier = await self._runs.find_by_request_id(
                    conn, project=run.project, request_id=request_id
                )
                if earlier is not None:
                    if earlier[1] != fingerprint:
                        raise InvalidArgument(
                            message="request_id: was already used for a different request",
                            reason="REQUEST_ID_REUSED",
                        )
                    return earlier[0]
            if not await self._runs.insert(
                conn,
                run,
                request_id=request_id or None,
                request_hash=fingerprint if request_id else None,
                heads=heads,
                messages=messages,
            ):
                # A concurrent request with the same request_id won the insert, or the
                # agent or task moved on since the run was prepared.
                earlier = (
                    await self._runs.find_by_request_id(conn, project=run.project, request_id=request_id)
                    if request_id
                    else None
                )
                if earlier is None:
                    raise _HeadsMoved  # the next attempt reads the current versions afresh
                return earlier[0]
        self._outbox.committed(*messages)
        return run

    async def _save(self, run: Run, actor: str, *, stale_before: dt.datetime | None = None) -> bool:
        """Store a new state with its event; False when the run had already ended.

        With `stale_before` (the reaper), only a run still `running` since before then.
        """
        messages = (self._event(run, actor),)
        async with driver_connection(self._engine) as conn:
            if stale_before is None:
                saved = await self._runs.save_state(conn, run, messages)
            else:
                saved = await self._runs.reap(conn, run, messages, started_before=stale_before)
        if saved:
            self._outbox.committed(*messages)
            if run.end_time is not None:
                observe_finished_run(run)
        return saved

    async def _stored_or(self, run: Run) -> Run:
        """The run as stored (another writer ended it first), else `run`."""
        async with self._engine.connect() as conn:
            return await self._runs.get(conn, run.id) or run

    async def _finish(
        self,
        run: Run,
        prompt: str,
        actor: str,
        on_partial: PartialSink | None = None,
        *,
        unstored: Callable[[Run, tuple[Run, ...]], Awaitable[Run]] | None = None,
    ) -> Run:
        """Execute and store the outcome.

        With `unstored` (which inserts a state of the run, after the events of the states
        it passed), the run is not stored yet: if the execution ends within
        `record_running_after_s`, the ended run is inserted once, with the event of its
        `running` state first; otherwise `run` is recorded as running (while the model is
        still being asked) and the outcome is saved as usual.
        """
        assert self._run_engine is not None
        started = time.perf_counter()
        key = RunKey(
            run.agent_id, run.agent_version, run.task_id, run.task_version, await self._provider_of(run)
        )
        if unstored is None:
            outcome = await self._run_engine.execute(key, prompt, on_partial=on_partial)
        else:
            execution = asyncio.ensure_future(self._run_engine.execute(key, prompt, on_partial=on_partial))
            try:
                done, _ = await asyncio.wait((execution,), timeout=self._record_running_after_s)
                if not done:
                    await unstored(run, ())
                    unstored = None
            except BaseException:
                execution.cancel()  # the run could not be stored: no answer without a record
                raise
            outcome = await execution
        finished = replace(
            run,
            status=outcome.status,
            output=outcome.output,
            error=outcome.error,
            usage=outcome.usage,
            attempts=outcome.attempts,
            latency_ms=int((time.perf_counter() - started) * 1000),
            end_time=utcnow(),
        )
        if unstored is not None:
            # Ended before it was recorded: one insert, both states' events, the same
            # check of the current versions (`_HeadsMoved`: the caller runs it again).
            await unstored(finished, (run,))
            observe_finished_run(finished)
            return finished
        if not await self._save(finished, actor):
            return await self._stored_or(finished)
        return finished

    async def _provider_of(self, run: Run) -> str:
        return (await self.agent_version(run.agent_id, run.agent_version)).provider_id

    def _shielded(self, work: Awaitable[Run]) -> asyncio.Task[Run]:
        """Run to completion even if the caller goes away; keep a reference meanwhile."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def drain(self, timeout_s: float) -> None:
        """Wait for runs still executing on behalf of callers that went away (shutdown)."""
        if self._background:
            await asyncio.wait(set(self._background), timeout=timeout_s)

    # --- use cases ----------------------------------------------------------------

    async def create(self, principal: Principal, request: RunRequest, *, request_id: str) -> Run:
        """Run and wait for the answer."""

        async def store(agent: Agent, task: Task, prompt: str, heads: Heads) -> tuple[Run, str]:
            run = self._new_run(agent, task, request, RunStatus.RUNNING)
            if request_id:
                fingerprint = _request_fingerprint(request)
                return await self._insert(
                    run, heads, actor=principal.key_id, request_id=request_id, fingerprint=fingerprint
                ), prompt

            # Nothing to deduplicate: the model is asked at once. A run that answers within
            # `record_running_after_s` is stored once, ended (one statement instead of two);
            # a longer one is recorded as running meanwhile, so it can be seen while it
            # runs. Either way its `running` event comes before the outcome's, and a run
            # that cannot be stored gives no answer.
            def unstored(state: Run, passed: tuple[Run, ...]) -> Awaitable[Run]:
                return self._insert(
                    state, heads, actor=principal.key_id, request_id="", fingerprint="", passed=passed
                )

            finish = self._finish(run, prompt, principal.key_id, unstored=unstored)
            return await asyncio.shield(self._shielded(finish)), prompt

        run, prompt = await self._stored_new(principal, request, store)
        if run.status is not RunStatus.RUNNING or run.end_time is not None:
            return run  # finished here, or an earlier request with this request_id
        return await asyncio.shield(self._shielded(self._finish(run, prompt, principal.key_id)))

    async def start(self, principal: Principal, request: RunRequest, *, request_id: str) -> Run:
        """Queue a run; a RunWorker executes it."""

        async def store(agent: Agent, task: Task, _prompt: str, heads: Heads) -> Run:
            run = self._new_run(agent, task, request, RunStatus.QUEUED)
            job = Outbox.job(subject=RUN_JOB_SUBJECT, body={"run_id": run.id, "actor": principal.key_id})
            return await self._insert(
                run,
                heads,
                actor=principal.key_id,
                request_id=request_id,
                fingerprint=_request_fingerprint(request),
                job=job,
            )

        return await self._stored_new(principal, request, store)

    async def stream(self, principal: Principal, request: RunRequest) -> AsyncIterator[JsonObject | Run]:
        """Run, yielding partial outputs as they arrive, then the finished run."""

        async def store(agent: Agent, task: Task, prompt: str, heads: Heads) -> tuple[Run, str]:
            new = self._new_run(agent, task, request, RunStatus.RUNNING)
            return await self._insert(
                new, heads, actor=principal.key_id, request_id="", fingerprint=""
            ), prompt

        run, prompt = await self._stored_new(principal, request, store)
        queue: asyncio.Queue[JsonObject] = asyncio.Queue(maxsize=64)

        async def sink(partial: JsonObject) -> None:
            with contextlib.suppress(asyncio.QueueFull):  # a slow reader skips intermediate states
                queue.put_nowait(partial)

        execution = self._shielded(self._finish(run, prompt, principal.key_id, on_partial=sink))
        while not execution.done() or not queue.empty():
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter, execution}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                yield getter.result()
            else:
                getter.cancel()
        yield execution.result()

    async def execute_queued(self, run_id: str, actor: str) -> Run | None:
        """Execute a queued run (RunWorker). A run already finished is left alone."""
        async with self._engine.connect() as conn:
            run = await self._runs.get(conn, run_id)
        if run is None or run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED):
            return run
        try:
            agent = await self.agent_version(run.agent_id, run.agent_version)
            task = await self.task_version(run.task_id, run.task_version)
            prompt = run.prompt or render_prompt(task.prompt_template, run.variables)
        except DomainError as exc:  # deleted since it was queued
            failed = replace(
                run,
                status=RunStatus.FAILED,
                error=RunError(RunErrorCode.PROVIDER_NOT_FOUND, _scrub(exc.message)),
                start_time=run.start_time or utcnow(),
                end_time=utcnow(),
            )
            await self._save(failed, actor)
            return failed
        running = replace(run, status=RunStatus.RUNNING, start_time=utcnow())
        if not await self._save(running, actor):  # ended meanwhile (reaped, or run elsewhere)
            return await self._stored_or(running)
        del agent
        return await self._shielded(self._finish(running, prompt, actor))

    async def get(self, principal: Principal, run_id: str) -> Run:
        """One run the caller may see."""
        async with self._engine.connect() as conn:
            run = await self._runs.get(conn, run_id) if run_id else None
        if run is None or not principal.can_see(run.project):
            raise NotFound(f"run '{run_id}' not found")
        return run

    async def list_page(
        self,
        principal: Principal,
        *,
        page_size_: int,
        page_token: str,
        project: str,
        agent_id: str,
        task_id: str,
        status: str,
    ) -> tuple[list[Run], str]:
        """A page of runs, newest first."""
        size = page_size(page_size_)
        if project:
            validate_name(project, field="project")
        visible = principal.visible_projects(project)
        status_filter = RunStatus.parse(status, field_path="status") if status else None
        filters = {"project": visible, "agent_id": agent_id, "task_id": task_id, "status": status}
        position = decode_page_token(page_token, filters, arity=2)
        before = None
        if position:
            try:
                before = (dt.datetime.fromisoformat(str(position[0])), str(position[1]))
            except ValueError:
                raise InvalidArgument.for_field("page_token", "is not a token this API issued") from None
        async with self._engine.connect() as conn:
            rows = await self._runs.list_page(
                conn,
                project=visible,
                agent_id=agent_id or None,
                task_id=task_id or None,
                status=status_filter,
                before=before,
                limit=size + 1,
            )
        page, more = rows[:size], len(rows) > size
        token = (
            encode_page_token((page[-1].create_time.isoformat(), page[-1].id), filters)
            if more and page
            else ""
        )
        return page, token

    async def fail_stale(self, *, older_than: dt.timedelta, actor: str) -> int:
        """Fail runs stuck `running` past any possible timeout (their process died); how many."""
        cutoff = utcnow() - older_than
        async with self._engine.connect() as conn:
            stale = await self._runs.stale_running(conn, started_before=cutoff, limit=100)
        reaped = 0
        for run in stale:
            reaped += await self._save(
                replace(
                    run,
                    status=RunStatus.FAILED,
                    error=RunError(
                        RunErrorCode.INTERNAL, "the run was interrupted (its agent_svc replica stopped)"
                    ),
                    end_time=utcnow(),
                ),
                actor,
                stale_before=cutoff,
            )
        return reaped


class RunWorker:
    """Executes started runs from the JetStream work queue (one job, one replica)."""

    def __init__(
        self, *, js: JetStreamContext, service: RunService, concurrency: int, ack_wait_s: float = 60.0
    ) -> None:
        self._js = js
        self._service = service
        self._concurrency = concurrency
        self._ack_wait_s = ack_wait_s

    async def run(self) -> None:
        """Consume jobs until cancelled."""
        subscription = await self._js.pull_subscribe(
            RUN_JOB_SUBJECT,
            durable="run-worker",
            stream=JOBS_STREAM,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=self._ack_wait_s,
                max_deliver=5,
                max_ack_pending=self._concurrency * 4,
            ),
        )
        in_flight = 0
        room = asyncio.Event()
        room.set()

        async def run_job(message: Msg) -> None:
            nonlocal in_flight
            try:
                await self._handle(message)
            except Exception:  # a job never takes the worker down; JetStream redelivers it
                _log.exception("run_job_failed")
            finally:
                in_flight -= 1
                room.set()

        async with asyncio.TaskGroup() as tasks:
            while True:
                await room.wait()
                try:
                    messages = await subscription.fetch(batch=self._concurrency - in_flight, timeout=1.0)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                except nats.errors.Error as exc:
                    _log.warning("run_fetch_failed", error=type(exc).__name__)
                    await asyncio.sleep(1.0)
                    continue
                for message in messages:
                    in_flight += 1
                    tasks.create_task(run_job(message))
                if in_flight >= self._concurrency:
                    room.clear()

    async def _handle(self, message: Msg) -> None:
        try:
            job = json.loads(message.data)
            run_id, actor = str(job["run_id"]), str(job.get("actor") or "system:run-worker")
        except (ValueError, KeyError, TypeError):
            await message.term()
            return

        async def heartbeat() -> None:
            while True:
                await asyncio.sleep(self._ack_wait_s / 3)
                with contextlib.suppress(Exception):
                    await message.in_progress()

        beat = asyncio.create_task(heartbeat())
        try:
            await self._service.execute_queued(run_id, actor)
        except Unavailable:
            await message.nak(delay=5)
            return
        finally:
            beat.cancel()
        await message.ack()


class StaleRunReaper:
    """Periodically fails runs left `running` by a replica that died mid-run."""

    def __init__(self, *, service: RunService, interval_s: float = 60.0, grace: dt.timedelta) -> None:
        self._service = service
        self._interval_s = interval_s
        self._grace = grace

    async def run(self) -> None:
        """Scan until cancelled."""
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                reaped = await self._service.fail_stale(older_than=self._grace, actor="system:run-reaper")
                if reaped:
                    _log.warning("stale_runs_failed", count=reaped)
            except Exception as exc:  # database hiccup: next round
                _log.warning("stale_run_scan_failed", error=type(exc).__name__)
