"""agent_svc's tables and every SQL statement it runs (schema `agent_svc`).

Agents and tasks keep a head row (the current version, used for listing and unique
names) and one immutable row per version (read by `GetAgent`/`GetTask` with a version
and pinned by runs). Deleting marks the head deleted; versions stay for run history.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    RowMapping,
    Table,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    exists,
    literal_column,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import JSON, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from libs.common.db import Executor, FastQuery
from libs.common.errors import AlreadyExists
from libs.common.outbox import Outbox, OutboxMessage, OutboxWrite, outbox_table
from services.agent_svc.domain import (
    Agent,
    ModelSettings,
    Run,
    RunError,
    RunErrorCode,
    RunStatus,
    Task,
    Usage,
)

__all__ = ["SCHEMA", "AgentRepository", "RunRepository", "TaskRepository", "metadata", "outbox"]

SCHEMA = "agent_svc"
metadata = MetaData(schema=SCHEMA)

_TS = DateTime(timezone=True)

agents = Table(
    "agents",
    metadata,
    Column("id", Text, primary_key=True),
    Column("project", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("provider_id", Text, nullable=False),
    Column("labels", JSONB, nullable=False, server_default="{}"),
    Column("create_time", _TS, nullable=False),
    Column("update_time", _TS, nullable=False),
    Column("deleted_time", _TS, nullable=True),
    Column("create_request_id", Text, nullable=True),
    Column("create_request_hash", Text, nullable=True),
    Index(
        "agents_live_name_key", "project", "name", unique=True, postgresql_where=text("deleted_time IS NULL")
    ),
    UniqueConstraint("project", "create_request_id", name="agents_project_request_id_key"),
    Index("agents_provider_idx", "provider_id", postgresql_where=text("deleted_time IS NULL")),
)

agent_versions = Table(
    "agent_versions",
    metadata,
    Column("agent_id", Text, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("project", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("provider_id", Text, nullable=False),
    Column("model", Text, nullable=False),
    Column("system_prompt", Text, nullable=False),
    Column("model_settings", JSONB, nullable=False),
    Column("output_retries", Integer, nullable=False),
    Column("labels", JSONB, nullable=False),
    Column("create_time", _TS, nullable=False),
    Column("update_time", _TS, nullable=False),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", Text, primary_key=True),
    Column("project", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("create_time", _TS, nullable=False),
    Column("update_time", _TS, nullable=False),
    Column("deleted_time", _TS, nullable=True),
    Column("create_request_id", Text, nullable=True),
    Column("create_request_hash", Text, nullable=True),
    Index(
        "tasks_live_name_key", "project", "name", unique=True, postgresql_where=text("deleted_time IS NULL")
    ),
    UniqueConstraint("project", "create_request_id", name="tasks_project_request_id_key"),
)

task_versions = Table(
    "task_versions",
    metadata,
    Column("task_id", Text, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("project", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("instructions", Text, nullable=False),
    Column("prompt_template", Text, nullable=False),
    # `json`, not `jsonb`: the schema keeps its author's key order (migration 0002).
    Column("response_schema", JSON, nullable=False),
    Column("schema_hash", Text, nullable=False),
    Column("create_time", _TS, nullable=False),
    Column("update_time", _TS, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Text, primary_key=True),
    Column("project", Text, nullable=False),
    Column("agent_id", Text, nullable=False),
    Column("agent_version", Integer, nullable=False),
    Column("task_id", Text, nullable=False),
    Column("task_version", Integer, nullable=False),
    Column("variables", JSONB, nullable=False),
    Column("prompt", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("output", JSONB, nullable=True),
    Column("error_code", Text, nullable=True),
    Column("error_message", Text, nullable=True),
    Column("usage_requests", Integer, nullable=False, server_default="0"),
    Column("usage_input_tokens", Integer, nullable=False, server_default="0"),
    Column("usage_output_tokens", Integer, nullable=False, server_default="0"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("latency_ms", Integer, nullable=False, server_default="0"),
    Column("create_time", _TS, nullable=False),
    Column("start_time", _TS, nullable=True),
    Column("end_time", _TS, nullable=True),
    Column("request_id", Text, nullable=True),
    Column("request_hash", Text, nullable=True),
    UniqueConstraint("project", "request_id", name="runs_project_request_id_key"),
    Index("runs_list_idx", "project", "create_time", "id"),
    Index("runs_agent_idx", "agent_id", "create_time"),
    Index("runs_task_idx", "task_id", "create_time"),
    Index("runs_status_idx", "status", "create_time"),
)

outbox = outbox_table(metadata, schema=SCHEMA)


def _dump(value: object) -> str:
    """JSONB parameters for FastQuery statements (the asyncpg codec takes JSON text)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Created:
    """Outcome of an insert guarded by request_id and unique name."""

    inserted: bool
    """False: an earlier request with the same request_id made the resource."""


# --- agents ------------------------------------------------------------------------

_AGENT_VERSION_COLUMNS = tuple(agent_versions.c)


def _to_agent(m: RowMapping | Mapping[str, Any], *, create_time: dt.datetime | None = None) -> Agent:
    return Agent(
        id=m["agent_id"],
        project=m["project"],
        name=m["name"],
        description=m["description"],
        provider_id=m["provider_id"],
        model=m["model"],
        system_prompt=m["system_prompt"],
        model_settings=ModelSettings.from_json(m["model_settings"]),
        output_retries=m["output_retries"],
        labels=dict(m["labels"]),
        version=m["version"],
        create_time=create_time or m["create_time"],
        update_time=m["update_time"],
    )


def _agent_version_values(agent: Agent) -> dict[str, object]:
    return {
        "agent_id": agent.id,
        "version": agent.version,
        "project": agent.project,
        "name": agent.name,
        "description": agent.description,
        "provider_id": agent.provider_id,
        "model": agent.model,
        "system_prompt": agent.system_prompt,
        "model_settings": agent.model_settings.to_json(),
        "output_retries": agent.output_retries,
        "labels": dict(agent.labels),
        "create_time": agent.create_time,
        "update_time": agent.update_time,
    }


_CURRENT_AGENT = FastQuery(
    select(*_AGENT_VERSION_COLUMNS, agents.c.create_time.label("head_create_time"))
    .join(
        agents, and_(agents.c.id == agent_versions.c.agent_id, agents.c.version == agent_versions.c.version)
    )
    .where(agents.c.id == bindparam("id"), agents.c.deleted_time.is_(None))
)
_AGENT_VERSION = FastQuery(
    select(*_AGENT_VERSION_COLUMNS, agents.c.create_time.label("head_create_time"))
    .join(agents, agents.c.id == agent_versions.c.agent_id)
    .where(
        agent_versions.c.agent_id == bindparam("id"),
        agent_versions.c.version == bindparam("version"),
        agents.c.deleted_time.is_(None),
    )
)


class AgentRepository:
    """SQL for agents and their versions."""

    async def insert(
        self, conn: AsyncConnection, agent: Agent, *, request_id: str | None, request_hash: str | None
    ) -> bool:
        """Insert version 1; False when the request_id was used already; ALREADY_EXISTS on the name."""
        inserted = (
            await conn.execute(
                pg_insert(agents)
                .values(
                    id=agent.id,
                    project=agent.project,
                    name=agent.name,
                    version=agent.version,
                    provider_id=agent.provider_id,
                    labels=dict(agent.labels),
                    create_time=agent.create_time,
                    update_time=agent.update_time,
                    create_request_id=request_id,
                    create_request_hash=request_hash,
                )
                .on_conflict_do_nothing()
                .returning(agents.c.id)
            )
        ).first()
        if inserted is None:
            if request_id is not None and await self.find_by_request_id(
                conn, project=agent.project, request_id=request_id
            ):
                return False
            raise AlreadyExists(f"an agent named '{agent.name}' already exists in project '{agent.project}'")
        await conn.execute(agent_versions.insert().values(**_agent_version_values(agent)))
        return True

    async def find_by_request_id(
        self, conn: AsyncConnection, *, project: str, request_id: str
    ) -> tuple[Agent, str] | None:
        """The agent (as created) an earlier request made, and that request's fingerprint."""
        row = (
            await conn.execute(
                select(*_AGENT_VERSION_COLUMNS, agents.c.create_request_hash)
                .join(agents, agents.c.id == agent_versions.c.agent_id)
                .where(
                    agents.c.project == project,
                    agents.c.create_request_id == request_id,
                    agent_versions.c.version == 1,
                )
            )
        ).first()
        if row is None:
            return None
        return _to_agent(row._mapping), row.create_request_hash or ""

    async def get(self, conn: Executor, agent_id: str, *, version: int = 0) -> Agent | None:
        """The current version (0) or a given version of a live agent."""
        if version:
            row = await _AGENT_VERSION.fetchrow(conn, {"id": agent_id, "version": version})
        else:
            row = await _CURRENT_AGENT.fetchrow(conn, {"id": agent_id})
        return None if row is None else _to_agent(row, create_time=cast(dt.datetime, row["head_create_time"]))

    async def lock_current(self, conn: AsyncConnection, agent_id: str) -> Agent | None:
        """The current version, its head row locked for an update or delete."""
        head = (
            await conn.execute(
                select(agents.c.version, agents.c.create_time)
                .where(agents.c.id == agent_id, agents.c.deleted_time.is_(None))
                .with_for_update()
            )
        ).first()
        if head is None:
            return None
        row = (
            await conn.execute(
                select(*_AGENT_VERSION_COLUMNS).where(
                    agent_versions.c.agent_id == agent_id, agent_versions.c.version == head.version
                )
            )
        ).first()
        return None if row is None else _to_agent(row._mapping, create_time=head.create_time)

    async def add_version(self, conn: AsyncConnection, agent: Agent) -> None:
        """Store a new version and make it current; ALREADY_EXISTS when renamed onto a taken name."""
        if await self._name_taken(conn, agent.project, agent.name, agent.id):
            raise AlreadyExists(f"an agent named '{agent.name}' already exists in project '{agent.project}'")
        await conn.execute(agent_versions.insert().values(**_agent_version_values(agent)))
        await conn.execute(
            update(agents)
            .where(agents.c.id == agent.id)
            .values(
                name=agent.name,
                version=agent.version,
                provider_id=agent.provider_id,
                labels=dict(agent.labels),
                update_time=agent.update_time,
            )
        )

    async def _name_taken(self, conn: AsyncConnection, project: str, name: str, own_id: str) -> bool:
        row = (
            await conn.execute(
                select(agents.c.id).where(
                    agents.c.project == project,
                    agents.c.name == name,
                    agents.c.deleted_time.is_(None),
                    agents.c.id != own_id,
                )
            )
        ).first()
        return row is not None

    async def mark_deleted(self, conn: AsyncConnection, agent_id: str, *, when: dt.datetime) -> None:
        """Delete the agent (its versions stay for run history)."""
        await conn.execute(update(agents).where(agents.c.id == agent_id).values(deleted_time=when))

    async def list_page(
        self,
        conn: AsyncConnection,
        *,
        project: str | None,
        provider_id: str | None,
        label: tuple[str, str] | None,
        after: tuple[str, str] | None,
        limit: int,
    ) -> list[Agent]:
        """Current versions ordered by (project, name)."""
        conditions: list[ColumnElement[bool]] = [agents.c.deleted_time.is_(None)]
        if project is not None:
            conditions.append(agents.c.project == project)
        if provider_id is not None:
            conditions.append(agents.c.provider_id == provider_id)
        if label is not None:
            conditions.append(agents.c.labels.contains({label[0]: label[1]}))
        if after is not None:
            conditions.append(tuple_(agents.c.project, agents.c.name) > tuple_(*after))
        rows = await conn.execute(
            select(*_AGENT_VERSION_COLUMNS, agents.c.create_time.label("head_create_time"))
            .join(
                agents,
                and_(agents.c.id == agent_versions.c.agent_id, agents.c.version == agent_versions.c.version),
            )
            .where(and_(*conditions))
            .order_by(agents.c.project, agents.c.name)
            .limit(limit)
        )
        return [_to_agent(r._mapping, create_time=r.head_create_time) for r in rows.all()]

    async def list_versions(
        self, conn: AsyncConnection, agent_id: str, *, before: int | None, limit: int
    ) -> list[Agent]:
        """Versions of a live agent, newest first."""
        conditions: list[ColumnElement[bool]] = [
            agent_versions.c.agent_id == agent_id,
            agents.c.deleted_time.is_(None),
        ]
        if before is not None:
            conditions.append(agent_versions.c.version < before)
        rows = await conn.execute(
            select(*_AGENT_VERSION_COLUMNS, agents.c.create_time.label("head_create_time"))
            .join(agents, agents.c.id == agent_versions.c.agent_id)
            .where(and_(*conditions))
            .order_by(agent_versions.c.version.desc())
            .limit(limit)
        )
        return [_to_agent(r._mapping, create_time=r.head_create_time) for r in rows.all()]

    async def count_using_provider(self, conn: AsyncConnection, provider_id: str) -> int:
        """Live agents whose current version uses the provider."""
        row = (
            await conn.execute(
                select(agents.c.id).where(
                    agents.c.provider_id == provider_id, agents.c.deleted_time.is_(None)
                )
            )
        ).all()
        return len(row)


# --- tasks -------------------------------------------------------------------------

_TASK_VERSION_COLUMNS = tuple(task_versions.c)


def _to_task(m: RowMapping | Mapping[str, Any], *, create_time: dt.datetime | None = None) -> Task:
    return Task(
        id=m["task_id"],
        project=m["project"],
        name=m["name"],
        description=m["description"],
        instructions=m["instructions"],
        prompt_template=m["prompt_template"],
        response_schema=dict(m["response_schema"]),
        schema_hash=m["schema_hash"],
        version=m["version"],
        create_time=create_time or m["create_time"],
        update_time=m["update_time"],
    )


def _task_version_values(task: Task) -> dict[str, object]:
    return {
        "task_id": task.id,
        "version": task.version,
        "project": task.project,
        "name": task.name,
        "description": task.description,
        "instructions": task.instructions,
        "prompt_template": task.prompt_template,
        "response_schema": task.response_schema,
        "schema_hash": task.schema_hash,
        "create_time": task.create_time,
        "update_time": task.update_time,
    }


_CURRENT_TASK = FastQuery(
    select(*_TASK_VERSION_COLUMNS, tasks.c.create_time.label("head_create_time"))
    .join(tasks, and_(tasks.c.id == task_versions.c.task_id, tasks.c.version == task_versions.c.version))
    .where(tasks.c.id == bindparam("id"), tasks.c.deleted_time.is_(None))
)
_TASK_VERSION = FastQuery(
    select(*_TASK_VERSION_COLUMNS, tasks.c.create_time.label("head_create_time"))
    .join(tasks, tasks.c.id == task_versions.c.task_id)
    .where(
        task_versions.c.task_id == bindparam("id"),
        task_versions.c.version == bindparam("version"),
        tasks.c.deleted_time.is_(None),
    )
)


class TaskRepository:
    """SQL for tasks and their versions."""

    async def insert(
        self, conn: AsyncConnection, task: Task, *, request_id: str | None, request_hash: str | None
    ) -> bool:
        """Insert version 1; False when the request_id was used already; ALREADY_EXISTS on the name."""
        inserted = (
            await conn.execute(
                pg_insert(tasks)
                .values(
                    id=task.id,
                    project=task.project,
                    name=task.name,
                    version=task.version,
                    create_time=task.create_time,
                    update_time=task.update_time,
                    create_request_id=request_id,
                    create_request_hash=request_hash,
                )
                .on_conflict_do_nothing()
                .returning(tasks.c.id)
            )
        ).first()
        if inserted is None:
            if request_id is not None and await self.find_by_request_id(
                conn, project=task.project, request_id=request_id
            ):
                return False
            raise AlreadyExists(f"a task named '{task.name}' already exists in project '{task.project}'")
        await conn.execute(task_versions.insert().values(**_task_version_values(task)))
        return True

    async def find_by_request_id(
        self, conn: AsyncConnection, *, project: str, request_id: str
    ) -> tuple[Task, str] | None:
        """The task (as created) an earlier request made, and that request's fingerprint."""
        row = (
            await conn.execute(
                select(*_TASK_VERSION_COLUMNS, tasks.c.create_request_hash)
                .join(tasks, tasks.c.id == task_versions.c.task_id)
                .where(
                    tasks.c.project == project,
                    tasks.c.create_request_id == request_id,
                    task_versions.c.version == 1,
                )
            )
        ).first()
        if row is None:
            return None
        return _to_task(row._mapping), row.create_request_hash or ""

    async def get(self, conn: Executor, task_id: str, *, version: int = 0) -> Task | None:
        """The current version (0) or a given version of a live task."""
        if version:
            row = await _TASK_VERSION.fetchrow(conn, {"id": task_id, "version": version})
        else:
            row = await _CURRENT_TASK.fetchrow(conn, {"id": task_id})
        return None if row is None else _to_task(row, create_time=cast(dt.datetime, row["head_create_time"]))

    async def lock_current(self, conn: AsyncConnection, task_id: str) -> Task | None:
        """The current version, its head row locked for an update or delete."""
        head = (
            await conn.execute(
                select(tasks.c.version, tasks.c.create_time)
                .where(tasks.c.id == task_id, tasks.c.deleted_time.is_(None))
                .with_for_update()
            )
        ).first()
        if head is None:
            return None
        row = (
            await conn.execute(
                select(*_TASK_VERSION_COLUMNS).where(
                    task_versions.c.task_id == task_id, task_versions.c.version == head.version
                )
            )
        ).first()
        return None if row is None else _to_task(row._mapping, create_time=head.create_time)

    async def add_version(self, conn: AsyncConnection, task: Task) -> None:
        """Store a new version and make it current; ALREADY_EXISTS when renamed onto a taken name."""
        taken = (
            await conn.execute(
                select(tasks.c.id).where(
                    tasks.c.project == task.project,
                    tasks.c.name == task.name,
                    tasks.c.deleted_time.is_(None),
                    tasks.c.id != task.id,
                )
            )
        ).first()
        if taken is not None:
            raise AlreadyExists(f"a task named '{task.name}' already exists in project '{task.project}'")
        await conn.execute(task_versions.insert().values(**_task_version_values(task)))
        await conn.execute(
            update(tasks)
            .where(tasks.c.id == task.id)
            .values(name=task.name, version=task.version, update_time=task.update_time)
        )

    async def mark_deleted(self, conn: AsyncConnection, task_id: str, *, when: dt.datetime) -> None:
        """Delete the task (its versions stay for run history)."""
        await conn.execute(update(tasks).where(tasks.c.id == task_id).values(deleted_time=when))

    async def list_page(
        self, conn: AsyncConnection, *, project: str | None, after: tuple[str, str] | None, limit: int
    ) -> list[Task]:
        """Current versions ordered by (project, name)."""
        conditions: list[ColumnElement[bool]] = [tasks.c.deleted_time.is_(None)]
        if project is not None:
            conditions.append(tasks.c.project == project)
        if after is not None:
            conditions.append(tuple_(tasks.c.project, tasks.c.name) > tuple_(*after))
        rows = await conn.execute(
            select(*_TASK_VERSION_COLUMNS, tasks.c.create_time.label("head_create_time"))
            .join(
                tasks, and_(tasks.c.id == task_versions.c.task_id, tasks.c.version == task_versions.c.version)
            )
            .where(and_(*conditions))
            .order_by(tasks.c.project, tasks.c.name)
            .limit(limit)
        )
        return [_to_task(r._mapping, create_time=r.head_create_time) for r in rows.all()]

    async def list_versions(
        self, conn: AsyncConnection, task_id: str, *, before: int | None, limit: int
    ) -> list[Task]:
        """Versions of a live task, newest first."""
        conditions: list[ColumnElement[bool]] = [
            task_versions.c.task_id == task_id,
            tasks.c.deleted_time.is_(None),
        ]
        if before is not None:
            conditions.append(task_versions.c.version < before)
        rows = await conn.execute(
            select(*_TASK_VERSION_COLUMNS, tasks.c.create_time.label("head_create_time"))
            .join(tasks, tasks.c.id == task_versions.c.task_id)
            .where(and_(*conditions))
            .order_by(task_versions.c.version.desc())
            .limit(limit)
        )
        return [_to_task(r._mapping, create_time=r.head_create_time) for r in rows.all()]


# --- runs --------------------------------------------------------------------------

_RUN_COLUMNS = tuple(runs.c)


def _to_run(m: RowMapping | Mapping[str, Any]) -> Run:
    error = None
    if m["error_code"]:
        try:
            code = RunErrorCode(m["error_code"])
        except ValueError:
            code = RunErrorCode.INTERNAL
        error = RunError(code, m["error_message"] or "")
    return Run(
        id=m["id"],
        project=m["project"],
        agent_id=m["agent_id"],
        agent_version=m["agent_version"],
        task_id=m["task_id"],
        task_version=m["task_version"],
        variables=dict(m["variables"]),
        prompt=m["prompt"],
        status=RunStatus(m["status"]),
        output=dict(m["output"]) if m["output"] is not None else None,
        error=error,
        usage=Usage(m["usage_requests"], m["usage_input_tokens"], m["usage_output_tokens"]),
        attempts=m["attempts"],
        latency_ms=m["latency_ms"],
        create_time=m["create_time"],
        start_time=m["start_time"],
        end_time=m["end_time"],
    )


def run_values(run: Run) -> dict[str, object]:
    """Column values of a run, JSONB as JSON text (for FastQuery statements)."""
    return {
        "id": run.id,
        "project": run.project,
        "agent_id": run.agent_id,
        "agent_version": run.agent_version,
        "task_id": run.task_id,
        "task_version": run.task_version,
        "variables": _dump(run.variables),
        "prompt": run.prompt,
        "status": run.status.value,
        "output": _dump(run.output) if run.output is not None else None,
        "error_code": run.error.code.value if run.error else None,
        "error_message": run.error.message if run.error else None,
        "usage_requests": run.usage.requests,
        "usage_input_tokens": run.usage.input_tokens,
        "usage_output_tokens": run.usage.output_tokens,
        "attempts": run.attempts,
        "latency_ms": run.latency_ms,
        "create_time": run.create_time,
        "start_time": run.start_time,
        "end_time": run.end_time,
    }


_RUN_PARAMS = {c.name: bindparam(c.name, type_=c.type) for c in runs.c}


def _current_at(
    table: Table, versions: Table, key: str, id_param: str, head_param: str
) -> ColumnElement[bool]:
    """Version `head_param` was the resource's current one, live, at the run's create_time.

    Changes stamped after the run began do not count: a run pins what was current when
    it started, also when it is stored only once it has ended (`RunService.create`).
    """
    at = _RUN_PARAMS["create_time"]
    head = bindparam(head_param, type_=Integer)
    live = exists().where(
        table.c.id == _RUN_PARAMS[id_param],
        table.c.version >= head,
        or_(table.c.deleted_time.is_(None), table.c.deleted_time > at),
    )
    superseded = exists().where(
        versions.c[key] == _RUN_PARAMS[id_param],
        versions.c.version == head + literal_column("1"),
        versions.c.update_time <= at,
    )
    return and_(live, ~superseded)


# A run is stored only if the agent's and task's current versions at its start were the
# ones it was prepared with (they may come from a cache), atomically. No row back means a
# request_id conflict or a hint that was stale when the run began.
_RUN_INSERT = (
    pg_insert(runs)
    .from_select(
        [c.name for c in runs.c],
        # Typed parameters ($1::VARCHAR ...): the asyncpg dialect renders the casts.
        select(*(_RUN_PARAMS[c.name] for c in runs.c)).where(
            _current_at(agents, agent_versions, "agent_id", "agent_id", "agent_head"),
            _current_at(tasks, task_versions, "task_id", "task_id", "task_head"),
        ),
    )
    .on_conflict_do_nothing()
    .returning(runs.c.id)
)
_RUN_STATE = {
    name: bindparam(name, type_=runs.c[name].type)
    for name in (
        "status",
        "output",
        "error_code",
        "error_message",
        "usage_requests",
        "usage_input_tokens",
        "usage_output_tokens",
        "attempts",
        "latency_ms",
        "start_time",
        "end_time",
    )
}
# A run that ended is never written again: of two writers racing to end it (a replica
# re-executing a redelivered job, the stale-run reaper) exactly one wins and emits the
# final event; the other's update matches nothing, so it adds no event either.
# (Literal SQL: FastQuery statements take only named parameters, no expanding lists.)
_RUN_FINISH = (
    update(runs)
    .where(runs.c.id == bindparam("id"), text("status NOT IN ('succeeded', 'failed')"))
    .values(_RUN_STATE)
    .returning(runs.c.id)
)
# The reaper ends a run only if it is still the stale `running` it found: a replica that
# took the run over meanwhile has given it a new start_time, and keeps it.
_RUN_REAP = (
    update(runs)
    .where(
        runs.c.id == bindparam("id"),
        text("status = 'running'"),
        runs.c.start_time <= bindparam("started_before", type_=runs.c.start_time.type),
    )
    .values(_RUN_STATE)
    .returning(runs.c.id)
)
_RUN_GET = FastQuery(select(*_RUN_COLUMNS).where(runs.c.id == bindparam("id")))
_RUN_BY_REQUEST = FastQuery(
    select(*_RUN_COLUMNS).where(
        runs.c.project == bindparam("project"), runs.c.request_id == bindparam("request_id")
    )
)


_CURRENT_VERSIONS = FastQuery(
    select(
        select(agents.c.version)
        .where(agents.c.id == bindparam("agent_id"), agents.c.deleted_time.is_(None))
        .scalar_subquery()
        .label("agent_version"),
        select(tasks.c.version)
        .where(tasks.c.id == bindparam("task_id"), tasks.c.deleted_time.is_(None))
        .scalar_subquery()
        .label("task_version"),
    )
)


async def current_versions(conn: Executor, agent_id: str, task_id: str) -> tuple[int | None, int | None]:
    """The current versions of a live agent and a live task (None: no such one), one round trip."""
    row = await _CURRENT_VERSIONS.fetchrow(conn, {"agent_id": agent_id, "task_id": task_id})
    assert row is not None
    return row["agent_version"], row["task_version"]


class RunRepository:
    """SQL for runs (the hot path: raw statements on the driver connection).

    Writes go with their outbox messages in one statement (`OutboxWrite`): a run costs
    one round trip to store and one to finish, with no BEGIN or COMMIT.
    """

    def __init__(self, outbox: Outbox) -> None:
        self._insert = OutboxWrite(_RUN_INSERT, outbox)
        self._finish = OutboxWrite(_RUN_FINISH, outbox)
        self._reap = OutboxWrite(_RUN_REAP, outbox)

    async def insert(
        self,
        conn: Executor,
        run: Run,
        *,
        request_id: str | None,
        request_hash: str | None,
        heads: tuple[int, int],
        messages: Sequence[OutboxMessage],
    ) -> bool:
        """Insert with its messages, if the agent and task are live at `heads`.

        False when they are not (another version is current, or one was deleted), or when
        a run with the same request_id exists.
        """
        values = {
            **run_values(run),
            "request_id": request_id,
            "request_hash": request_hash,
            "agent_head": heads[0],
            "task_head": heads[1],
        }
        return await self._insert.execute(conn, values, messages)

    async def find_by_request_id(
        self, conn: Executor, *, project: str, request_id: str
    ) -> tuple[Run, str] | None:
        """The run an earlier request made, and that request's fingerprint."""
        row = await _RUN_BY_REQUEST.fetchrow(conn, {"project": project, "request_id": request_id})
        return None if row is None else (_to_run(row), str(row["request_hash"] or ""))

    async def save_state(self, conn: Executor, run: Run, messages: Sequence[OutboxMessage]) -> bool:
        """Store a run's new state (running, or finished) with its messages.

        False (and no message added) when the run is gone or has already ended.
        """
        return await self._finish.execute(conn, run_values(run), messages)

    async def reap(
        self, conn: Executor, run: Run, messages: Sequence[OutboxMessage], *, started_before: dt.datetime
    ) -> bool:
        """End a stale run, if it is still `running` since before `started_before`."""
        values = {**run_values(run), "started_before": started_before}
        return await self._reap.execute(conn, values, messages)

    async def get(self, conn: Executor, run_id: str) -> Run | None:
        """One run."""
        row = await _RUN_GET.fetchrow(conn, {"id": run_id})
        return None if row is None else _to_run(row)

    async def list_page(
        self,
        conn: AsyncConnection,
        *,
        project: str | None,
        agent_id: str | None,
        task_id: str | None,
        status: RunStatus | None,
        before: tuple[dt.datetime, str] | None,
        limit: int,
    ) -> list[Run]:
        """Runs newest first."""
        conditions: list[ColumnElement[bool]] = []
        if project is not None:
            conditions.append(runs.c.project == project)
        if agent_id is not None:
            conditions.append(runs.c.agent_id == agent_id)
        if task_id is not None:
            conditions.append(runs.c.task_id == task_id)
        if status is not None:
            conditions.append(runs.c.status == status.value)
        if before is not None:
            conditions.append(tuple_(runs.c.create_time, runs.c.id) < tuple_(*before))
        rows = await conn.execute(
            select(*_RUN_COLUMNS)
            .where(and_(True, *conditions))
            .order_by(runs.c.create_time.desc(), runs.c.id.desc())
            .limit(limit)
        )
        return [_to_run(r._mapping) for r in rows.all()]

    async def stale_running(
        self, conn: AsyncConnection, *, started_before: dt.datetime, limit: int
    ) -> list[Run]:
        """Runs still `running` that started before the cutoff."""
        rows = await conn.execute(
            select(*_RUN_COLUMNS)
            .where(runs.c.status == RunStatus.RUNNING.value, runs.c.start_time < started_before)
            .limit(limit)
        )
        return [_to_run(r._mapping) for r in rows.all()]
