"""agent_svc's composition root: builds every part and wires them together."""

from __future__ import annotations

import datetime as dt

import grpc
from pydantic_ai import Agent as PydanticAgent
from pydantic_ai.models.instrumented import InstrumentationSettings

from agentmgr.v1 import agent_pb2, agent_pb2_grpc, run_pb2, run_pb2_grpc, task_pb2, task_pb2_grpc
from libs.common.messaging import JOBS_STREAM
from libs.common.runtime import ServiceRuntime
from libs.common.ssrf import EgressPolicy, guarded_client, guarded_legacy_client
from libs.common.telemetry import grpc_client_interceptors, tracing_enabled
from services.agent_svc.invalidation import CacheInvalidator
from services.agent_svc.metrics import track_registry, track_runs
from services.agent_svc.models import HttpClients
from services.agent_svc.providers import ProviderClient
from services.agent_svc.repository import AgentRepository, RunRepository, TaskRepository, outbox
from services.agent_svc.runs import RunEngine, RunService, RunWorker, StaleRunReaper
from services.agent_svc.schema_compiler import SchemaCompiler
from services.agent_svc.service import AgentService, TaskService
from services.agent_svc.servicer import (
    ACCESS,
    METHOD_TIMEOUTS,
    AgentServicer,
    RunServicer,
    TaskServicer,
    agent_json,
    run_json,
    task_json,
)
from services.agent_svc.settings import AgentSettings

__all__ = ["AgentServer"]


def _service_name(descriptor: object, name: str) -> str:
    return str(descriptor.services_by_name[name].full_name)  # type: ignore[attr-defined]


def _trace_model_calls() -> None:
    """Spans for agent runs and model requests, from pydantic-ai's own instrumentation.

    Without content: prompts, variables, answers and tool schemas stay out of traces
    (they are user data); what remains is the model, the provider, timings and usage.
    """
    PydanticAgent.instrument_all(
        InstrumentationSettings(
            include_content=False, include_binary_content=False, include_model_request_parameters=False
        )
    )


# Compiled once at start: the regex translation's one-time Unicode tables (`\d`, `\w`, `\s`, about
# 0.15 s) and the format checkers are built before the first user's schema, not during it.
_WARM_UP_SCHEMA = {
    "type": "object",
    "properties": {
        "code": {"type": "string", "pattern": "^\\d\\w\\s$", "format": "date-time"},
        "mail": {"type": "string", "format": "email"},
    },
    "required": ["code"],
}


class AgentServer:
    """The agent service process: agents, tasks, runs, the registry and the run worker."""

    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
        self.runtime = ServiceRuntime(
            name="agent_svc",
            settings=settings,
            outbox_table=outbox,
            access=ACCESS,
            service_names=[
                _service_name(agent_pb2.DESCRIPTOR, "AgentService"),
                _service_name(task_pb2.DESCRIPTOR, "TaskService"),
                _service_name(run_pb2.DESCRIPTOR, "RunService"),
            ],
            method_timeouts=METHOD_TIMEOUTS,
        )
        self.egress = EgressPolicy.from_settings(
            allow_loopback=settings.ssrf_allow_loopback,
            allow_private=settings.ssrf_allow_private,
            allowed_networks=settings.allowed_networks(),
        )
        self.compiler = SchemaCompiler()
        self._channels: list[grpc.aio.Channel] = []
        self.providers: ProviderClient | None = None
        self.runs: RunService | None = None
        self.engine: RunEngine | None = None
        self.invalidator: CacheInvalidator | None = None

    async def start(self, address: str | None = None) -> int:
        """Connect, start serving; returns the gRPC port."""
        runtime, settings = self.runtime, self.settings
        self.compiler.compile(_WARM_UP_SCHEMA)
        await runtime.connect()
        interceptors = grpc_client_interceptors()
        public = grpc.aio.insecure_channel(settings.provider_svc_address, interceptors=interceptors)
        internal = grpc.aio.insecure_channel(settings.provider_internal_address, interceptors=interceptors)
        if tracing_enabled():
            _trace_model_calls()
        self._channels = [public, internal]
        providers = ProviderClient(
            public=public,
            internal=internal,
            service_key=settings.service_api_key.get_secret_value(),
            ttl_s=settings.credential_ttl_s,
        )
        self.providers = providers
        agents_repo, tasks_repo = AgentRepository(), TaskRepository()
        runs_repo = RunRepository(runtime.outbox)
        run_service = RunService(
            engine=runtime.engine,
            runs=runs_repo,
            agents=agents_repo,
            tasks=tasks_repo,
            outbox=runtime.outbox,
            run_engine=None,
            encode=run_json,
        )
        agent_service = AgentService(
            engine=runtime.engine,
            repository=agents_repo,
            outbox=runtime.outbox,
            providers=providers,
            encode=agent_json,
            forget_head=run_service.forget_head,
        )
        task_service = TaskService(
            engine=runtime.engine,
            repository=tasks_repo,
            outbox=runtime.outbox,
            compiler=self.compiler,
            encode=task_json,
            forget_head=run_service.forget_head,
        )
        http = HttpClients(
            modern=guarded_client(self.egress, timeout_s=settings.http_timeout_s, max_connections=512),
            legacy=guarded_legacy_client(self.egress, timeout_s=settings.http_timeout_s, max_connections=512),
        )
        engine = RunEngine(
            compiler=self.compiler,
            providers=providers,
            http=http,
            agents=run_service.agent_version,
            tasks=run_service.task_version,
            capacity=settings.registry_capacity,
        )
        run_service.attach_engine(engine)
        self.runs, self.engine = run_service, engine
        track_registry(engine.registry)
        track_runs(run_service)
        self.invalidator = CacheInvalidator(
            js=runtime.js, registry=engine.registry, providers=providers, forget_head=run_service.forget_head
        )
        server = runtime.grpc.server
        agent_pb2_grpc.add_AgentServiceServicer_to_server(AgentServicer(agent_service), server)
        task_pb2_grpc.add_TaskServiceServicer_to_server(TaskServicer(task_service), server)
        run_pb2_grpc.add_RunServiceServicer_to_server(RunServicer(run_service), server)
        runtime.add_job("cache-invalidator", self.invalidator.run)
        worker = RunWorker(
            js=runtime.js,
            service=run_service,
            concurrency=settings.run_workers,
            ack_wait_s=settings.run_job_ack_wait_s,
        )
        runtime.add_job("run-worker", worker.run)
        runtime.watch_consumer(JOBS_STREAM, "run-worker")  # RunWorker's durable consumer
        reaper = StaleRunReaper(
            service=run_service,
            interval_s=settings.run_reaper_interval_s,
            grace=dt.timedelta(seconds=settings.run_stale_after_s),
        )
        runtime.add_job("stale-run-reaper", reaper.run)
        return await runtime.start(address or f"{settings.grpc_bind_host}:{settings.agent_grpc_port}")

    async def stop(self) -> None:
        """Graceful stop: in-flight calls finish, then runs started for departed callers."""
        await self.runtime.grpc.set_serving(False)
        if self.runs is not None:
            await self.runs.drain(self.settings.shutdown_grace_s)
        await self.runtime.stop()
        for channel in self._channels:
            await channel.close(None)
