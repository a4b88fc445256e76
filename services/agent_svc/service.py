"""Agent and task use cases: versioned CRUD (DESIGN §2).

Every change makes a new version; versions are immutable and stay readable. Changes
commit together with their events through the outbox. An agent's provider must exist
in the agent's project (asked of provider_svc); a task's schema must compile.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from libs.common.auth import Principal
from libs.common.clock import utcnow
from libs.common.errors import InvalidArgument, NotFound
from libs.common.etag import check_etag
from libs.common.ids import new_id
from libs.common.jsonvalue import JsonObject, fingerprint
from libs.common.names import validate_name, validate_project
from libs.common.outbox import Outbox, OutboxMessage
from libs.common.pagination import decode_page_token, encode_page_token, page_size
from services.agent_svc.domain import (
    DESCRIPTION_MAX_CHARS,
    LABELS_MAX,
    MODEL_MAX_CHARS,
    TEXT_MAX_CHARS,
    Agent,
    ModelSettings,
    Task,
    template_variables,
)
from services.agent_svc.providers import ProviderClient
from services.agent_svc.repository import AgentRepository, TaskRepository
from services.agent_svc.schema_compiler import CompiledSchema, SchemaCompiler, SchemaError, ordered_hash

__all__ = [
    "AgentChanges",
    "AgentDraft",
    "AgentService",
    "SchemaVerdict",
    "TaskChanges",
    "TaskDraft",
    "TaskService",
]

DEFAULT_OUTPUT_RETRIES = 2
MAX_OUTPUT_RETRIES = 10
_REQUEST_ID_MAX = 128
_LABEL = re.compile(r"[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?")
_AGENT_FIELDS = frozenset(
    {
        "name",
        "description",
        "provider_id",
        "model",
        "system_prompt",
        "model_settings",
        "output_retries",
        "labels",
    }
)
_TASK_FIELDS = frozenset({"name", "description", "instructions", "prompt_template", "response_schema"})


def _check_text(value: str, *, field_path: str, limit: int) -> str:
    if len(value) > limit:
        raise InvalidArgument.for_field(field_path, f"must be at most {limit} characters")
    return value


def _check_request_id(request_id: str) -> str | None:
    if len(request_id) > _REQUEST_ID_MAX:
        raise InvalidArgument.for_field("request_id", f"must be at most {_REQUEST_ID_MAX} characters")
    return request_id or None


def _reused() -> InvalidArgument:
    return InvalidArgument(
        message="request_id: was already used for a different request", reason="REQUEST_ID_REUSED"
    )


def _check_mask(paths: Sequence[str], allowed: frozenset[str]) -> set[str]:
    if not paths:
        raise InvalidArgument.for_field("update_mask", "required: name the fields to change")
    unknown = sorted(set(paths) - allowed)
    if unknown:
        raise InvalidArgument.for_field(
            "update_mask",
            f"unknown or read-only field(s): {', '.join(unknown)}; updatable: {', '.join(sorted(allowed))}",
        )
    return set(paths)


# --- agents --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentDraft:
    """The fields of a create request."""

    project: str
    name: str
    description: str
    provider_id: str
    model: str
    system_prompt: str
    model_settings: ModelSettings
    output_retries: int | None
    labels: Mapping[str, str]
    request_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentChanges:
    """The fields of an update request; only those named in `paths` apply."""

    id: str
    etag: str
    paths: Sequence[str]
    name: str = ""
    description: str = ""
    provider_id: str = ""
    model: str = ""
    system_prompt: str = ""
    model_settings: ModelSettings = field(default_factory=ModelSettings)
    output_retries: int | None = None
    labels: Mapping[str, str] | None = None


def _check_labels(labels: Mapping[str, str], *, field_path: str) -> dict[str, str]:
    if len(labels) > LABELS_MAX:
        raise InvalidArgument.for_field(field_path, f"at most {LABELS_MAX} labels")
    for key, value in labels.items():
        if not _LABEL.fullmatch(key):
            raise InvalidArgument.for_field(
                f"{field_path}.{key}",
                "keys are 1-63 of a-z, 0-9, '.', '_', '/', '-' (alphanumeric at both ends)",
            )
        if len(value) > 63:
            raise InvalidArgument.for_field(f"{field_path}.{key}", "values are at most 63 characters")
    return dict(labels)


def _check_retries(value: int | None, *, field_path: str) -> int:
    if value is None:
        return DEFAULT_OUTPUT_RETRIES
    if not 0 <= value <= MAX_OUTPUT_RETRIES:
        raise InvalidArgument.for_field(field_path, f"must be between 0 and {MAX_OUTPUT_RETRIES}")
    return value


class AgentService:
    """The agent use cases."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        repository: AgentRepository,
        outbox: Outbox,
        providers: ProviderClient,
        encode: Callable[[Agent], JsonObject],
        forget_head: Callable[[str, str], None] = lambda collection, resource_id: None,
    ) -> None:
        self._engine = engine
        self._repo = repository
        self._outbox = outbox
        self._providers = providers
        self._encode = encode
        self._forget_head = forget_head

    def _event(self, agent: Agent, verb: str, actor: str) -> OutboxMessage:
        return self._outbox.event(
            collection="agents",
            resource="agent",
            verb=verb,
            resource_id=agent.id,
            project=agent.project,
            actor=actor,
            data=self._encode(agent),
        )

    async def _check_provider(self, provider_id: str, project: str, *, field_path: str) -> None:
        if not provider_id:
            raise InvalidArgument.for_field(field_path, "required")
        provider = await self._providers.get_provider(provider_id)
        if provider is None or provider.project != project:
            raise InvalidArgument.for_field(field_path, f"no provider '{provider_id}' in project '{project}'")

    async def create(self, principal: Principal, draft: AgentDraft) -> Agent:
        """Create an agent at version 1 (idempotent with a request_id)."""
        project = validate_project(draft.project, field="agent.project")
        principal.require_project(project)
        request_id = _check_request_id(draft.request_id)
        name = validate_name(draft.name, field="agent.name")
        description = _check_text(
            draft.description, field_path="agent.description", limit=DESCRIPTION_MAX_CHARS
        )
        model = draft.model.strip()
        if not model:
            raise InvalidArgument.for_field("agent.model", "required")
        _check_text(model, field_path="agent.model", limit=MODEL_MAX_CHARS)
        system_prompt = _check_text(
            draft.system_prompt, field_path="agent.system_prompt", limit=TEXT_MAX_CHARS
        )
        settings = draft.model_settings.checked(field_path="agent.model_settings")
        retries = _check_retries(draft.output_retries, field_path="agent.output_retries")
        labels = _check_labels(draft.labels, field_path="agent.labels")
        await self._check_provider(draft.provider_id, project, field_path="agent.provider_id")
        now = utcnow()
        agent = Agent(
            id=new_id("agt"),
            project=project,
            name=name,
            description=description,
            provider_id=draft.provider_id,
            model=model,
            system_prompt=system_prompt,
            model_settings=settings,
            output_retries=retries,
            labels=labels,
            version=1,
            create_time=now,
            update_time=now,
        )
        request_hash = (
            fingerprint(
                {
                    "name": name,
                    "description": description,
                    "provider_id": draft.provider_id,
                    "model": model,
                    "system_prompt": system_prompt,
                    "model_settings": settings.to_json(),
                    "output_retries": retries,
                    "labels": labels,
                }
            )
            if request_id
            else None
        )
        async with self._engine.begin() as conn:
            if request_id:
                earlier = await self._repo.find_by_request_id(conn, project=project, request_id=request_id)
                if earlier is not None:
                    if earlier[1] != request_hash:
                        raise _reused()
                    return earlier[0]
            if not await self._repo.insert(conn, agent, request_id=request_id, request_hash=request_hash):
                earlier = await self._repo.find_by_request_id(
                    conn, project=project, request_id=request_id or ""
                )
                assert earlier is not None
                return earlier[0]
            staged = await self._outbox.add(conn, self._event(agent, "created", principal.key_id))
        self._outbox.committed(*staged)
        return agent

    async def get(self, principal: Principal, agent_id: str, *, version: int = 0) -> Agent:
        """The current version, or the version asked for."""
        if version < 0:
            raise InvalidArgument.for_field("version", "must not be negative")
        async with self._engine.connect() as conn:
            agent = await self._repo.get(conn, agent_id, version=version) if agent_id else None
        if agent is None or not principal.can_see(agent.project):
            what = f"agent '{agent_id}'" + (f" version {version}" if version else "")
            raise NotFound(f"{what} not found")
        return agent

    async def _locked(self, conn: AsyncConnection, principal: Principal, agent_id: str) -> Agent:
        agent = await self._repo.lock_current(conn, agent_id) if agent_id else None
        if agent is None or not principal.can_see(agent.project):
            raise NotFound(f"agent '{agent_id}' not found")
        principal.require_project(agent.project)
        return agent

    async def update(self, principal: Principal, changes: AgentChanges) -> Agent:
        """Apply the masked fields as a new version."""
        paths = _check_mask(changes.paths, _AGENT_FIELDS)
        async with self._engine.begin() as conn:
            current = await self._locked(conn, principal, changes.id)
            check_etag(changes.etag, current.etag, what="agent")
            updated = current
            if "name" in paths:
                updated = replace(updated, name=validate_name(changes.name, field="agent.name"))
            if "description" in paths:
                updated = replace(
                    updated,
                    description=_check_text(
                        changes.description, field_path="agent.description", limit=DESCRIPTION_MAX_CHARS
                    ),
                )
            if "model" in paths:
                model = changes.model.strip()
                if not model:
                    raise InvalidArgument.for_field("agent.model", "required")
                updated = replace(
                    updated, model=_check_text(model, field_path="agent.model", limit=MODEL_MAX_CHARS)
                )
            if "system_prompt" in paths:
                updated = replace(
                    updated,
                    system_prompt=_check_text(
                        changes.system_prompt, field_path="agent.system_prompt", limit=TEXT_MAX_CHARS
                    ),
                )
            if "model_settings" in paths:
                updated = replace(
                    updated, model_settings=changes.model_settings.checked(field_path="agent.model_settings")
                )
            if "output_retries" in paths:
                updated = replace(
                    updated,
                    output_retries=_check_retries(changes.output_retries, field_path="agent.output_retries"),
                )
            if "labels" in paths:
                updated = replace(
                    updated, labels=_check_labels(changes.labels or {}, field_path="agent.labels")
                )
            if "provider_id" in paths and changes.provider_id != current.provider_id:
                await self._check_provider(
                    changes.provider_id, current.project, field_path="agent.provider_id"
                )
                updated = replace(updated, provider_id=changes.provider_id)
            if updated == current:
                return current
            updated = replace(updated, version=current.version + 1, update_time=utcnow())
            await self._repo.add_version(conn, updated)
            staged = await self._outbox.add(conn, self._event(updated, "updated", principal.key_id))
        self._outbox.committed(*staged)
        self._forget_head("agents", updated.id)
        return updated

    async def delete(self, principal: Principal, agent_id: str, *, etag: str) -> Agent:
        """Delete an agent (its versions stay for run history)."""
        async with self._engine.begin() as conn:
            current = await self._locked(conn, principal, agent_id)
            check_etag(etag, current.etag, what="agent")
            await self._repo.mark_deleted(conn, current.id, when=utcnow())
            staged = await self._outbox.add(conn, self._event(current, "deleted", principal.key_id))
        self._outbox.committed(*staged)
        self._forget_head("agents", current.id)
        return current

    async def list_page(
        self,
        principal: Principal,
        *,
        page_size_: int,
        page_token: str,
        project: str,
        provider_id: str,
        label: str,
    ) -> tuple[list[Agent], str]:
        """A page of current versions."""
        size = page_size(page_size_)
        if project:
            validate_name(project, field="project")
        visible = principal.visible_projects(project)
        label_filter: tuple[str, str] | None = None
        if label:
            key, sep, value = label.partition("=")
            if not sep or not key:
                raise InvalidArgument.for_field("label", "write it as key=value")
            label_filter = (key, value)
        filters = {"project": visible, "provider_id": provider_id, "label": label}
        position = decode_page_token(page_token, filters, arity=2)
        after = (str(position[0]), str(position[1])) if position else None
        async with self._engine.connect() as conn:
            rows = await self._repo.list_page(
                conn,
                project=visible,
                provider_id=provider_id or None,
                label=label_filter,
                after=after,
                limit=size + 1,
            )
        page, more = rows[:size], len(rows) > size
        token = encode_page_token((page[-1].project, page[-1].name), filters) if more and page else ""
        return page, token

    async def list_versions(
        self, principal: Principal, agent_id: str, *, page_size_: int, page_token: str
    ) -> tuple[list[Agent], str]:
        """A page of an agent's versions, newest first."""
        await self.get(principal, agent_id)
        size = page_size(page_size_)
        filters = {"agent": agent_id}
        position = decode_page_token(page_token, filters, arity=1)
        before = int(position[0]) if position else None
        async with self._engine.connect() as conn:
            rows = await self._repo.list_versions(conn, agent_id, before=before, limit=size + 1)
        page, more = rows[:size], len(rows) > size
        token = encode_page_token((page[-1].version,), filters) if more and page else ""
        return page, token


# --- tasks ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskDraft:
    """The fields of a create request."""

    project: str
    name: str
    description: str
    instructions: str
    prompt_template: str
    response_schema: JsonObject
    request_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskChanges:
    """The fields of an update request; only those named in `paths` apply."""

    id: str
    etag: str
    paths: Sequence[str]
    name: str = ""
    description: str = ""
    instructions: str = ""
    prompt_template: str = ""
    response_schema: JsonObject | None = None


@dataclass(frozen=True, slots=True)
class SchemaIssue:
    """A problem or caveat at a place in a schema."""

    pointer: str
    message: str
    provider_types: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SchemaVerdict:
    """What a save would say about a schema, plus provider caveats."""

    schema_hash: str
    errors: list[SchemaIssue]
    warnings: list[SchemaIssue]


def schema_warnings(schema: JsonObject) -> list[SchemaIssue]:
    """Constructs that some provider types handle poorly or refuse (advice, not errors)."""
    warnings: list[SchemaIssue] = []
    pending: list[tuple[str, object]] = [("", schema)]
    while pending:
        pointer, node = pending.pop()
        if not isinstance(node, dict):
            continue
        is_object = node.get("type") == "object" or "properties" in node
        if is_object:
            properties = node.get("properties") or {}
            required = set(node.get("required") or [])
            if isinstance(properties, dict) and set(properties) - required:
                missing = ", ".join(sorted(set(properties) - required))
                warnings.append(
                    SchemaIssue(
                        pointer,
                        f"OpenAI strict mode wants every property required (optional: {missing}); "
                        "make them required and nullable instead",
                        ("openai",),
                    )
                )
            if node.get("additionalProperties") is not False:
                warnings.append(
                    SchemaIssue(
                        pointer,
                        "OpenAI strict mode wants additionalProperties: false",
                        ("openai",),
                    )
                )
        for keyword in ("pattern", "format"):
            if keyword in node:
                warnings.append(
                    SchemaIssue(
                        f"{pointer}/{keyword}",
                        f"'{keyword}' is not enforced by the model's constrained decoding on "
                        "Google and some OpenAI models; answers are still validated and retried",
                        ("google", "openai"),
                    )
                )
        for keyword in ("oneOf",):
            if keyword in node:
                warnings.append(
                    SchemaIssue(
                        f"{pointer}/{keyword}",
                        "oneOf is not supported by OpenAI strict mode; anyOf is",
                        ("openai",),
                    )
                )
        for key, child in node.items():
            escaped = key.replace("~", "~0").replace("/", "~1")
            if isinstance(child, dict):
                pending.append((f"{pointer}/{escaped}", child))
            elif isinstance(child, list):
                pending.extend((f"{pointer}/{escaped}/{i}", c) for i, c in enumerate(child))
    return sorted(warnings, key=lambda w: (w.pointer, w.message))


class TaskService:
    """The task use cases."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        repository: TaskRepository,
        outbox: Outbox,
        compiler: SchemaCompiler,
        encode: Callable[[Task], JsonObject],
        forget_head: Callable[[str, str], None] = lambda collection, resource_id: None,
    ) -> None:
        self._engine = engine
        self._repo = repository
        self._outbox = outbox
        self._compiler = compiler
        self._encode = encode
        self._forget_head = forget_head

    def _event(self, task: Task, verb: str, actor: str) -> OutboxMessage:
        return self._outbox.event(
            collection="tasks",
            resource="task",
            verb=verb,
            resource_id=task.id,
            project=task.project,
            actor=actor,
            data=self._encode(task),
        )

    def compile(self, schema: JsonObject, *, field_path: str = "task.response_schema") -> CompiledSchema:
        """Compile a schema, or INVALID_ARGUMENT with the JSON pointer of the problem."""
        if not schema:
            raise InvalidArgument.for_field(
                field_path, 'required: a JSON Schema object with "type": "object"'
            )
        try:
            return self._compiler.compile(schema)
        except SchemaError as exc:
            raise InvalidArgument.for_field(
                field_path, f"{exc.pointer or '(root)'}: {exc.message}", metadata={"pointer": exc.pointer}
            ) from None

    def check_schema(self, schema: JsonObject) -> SchemaVerdict:
        """The verdict a save would give, without saving (the console's dry run)."""
        try:
            compiled = self.compile(schema, field_path="response_schema")
        except InvalidArgument as exc:
            pointer = exc.metadata.get("pointer", "")
            message = exc.violations[0].description if exc.violations else exc.message
            return SchemaVerdict("", [SchemaIssue(pointer, message.split(": ", 1)[-1])], [])
        return SchemaVerdict(compiled.schema_hash, [], schema_warnings(schema))

    def _checked_template(self, template: str) -> str:
        _check_text(template, field_path="task.prompt_template", limit=TEXT_MAX_CHARS)
        template_variables(template)
        return template

    async def create(self, principal: Principal, draft: TaskDraft) -> Task:
        """Create a task at version 1 (idempotent with a request_id)."""
        project = validate_project(draft.project, field="task.project")
        principal.require_project(project)
        request_id = _check_request_id(draft.request_id)
        name = validate_name(draft.name, field="task.name")
        description = _check_text(
            draft.description, field_path="task.description", limit=DESCRIPTION_MAX_CHARS
        )
        instructions = _check_text(draft.instructions, field_path="task.instructions", limit=TEXT_MAX_CHARS)
        template = self._checked_template(draft.prompt_template)
        compiled = self.compile(draft.response_schema)
        now = utcnow()
        task = Task(
            id=new_id("tsk"),
            project=project,
            name=name,
            description=description,
            instructions=instructions,
            prompt_template=template,
            response_schema=draft.response_schema,
            schema_hash=compiled.schema_hash,
            version=1,
            create_time=now,
            update_time=now,
        )
        request_hash = (
            fingerprint(
                {
                    "name": name,
                    "description": description,
                    "instructions": instructions,
                    "prompt_template": template,
                    # Key order is part of the request: it is what the model is shown.
                    "schema": compiled.ordered_hash,
                }
            )
            if request_id
            else None
        )
        async with self._engine.begin() as conn:
            if request_id:
                earlier = await self._repo.find_by_request_id(conn, project=project, request_id=request_id)
                if earlier is not None:
                    if earlier[1] != request_hash:
                        raise _reused()
                    return earlier[0]
            if not await self._repo.insert(conn, task, request_id=request_id, request_hash=request_hash):
                earlier = await self._repo.find_by_request_id(
                    conn, project=project, request_id=request_id or ""
                )
                assert earlier is not None
                return earlier[0]
            staged = await self._outbox.add(conn, self._event(task, "created", principal.key_id))
        self._outbox.committed(*staged)
        return task

    async def get(self, principal: Principal, task_id: str, *, version: int = 0) -> Task:
        """The current version, or the version asked for."""
        if version < 0:
            raise InvalidArgument.for_field("version", "must not be negative")
        async with self._engine.connect() as conn:
            task = await self._repo.get(conn, task_id, version=version) if task_id else None
        if task is None or not principal.can_see(task.project):
            what = f"task '{task_id}'" + (f" version {version}" if version else "")
            raise NotFound(f"{what} not found")
        return task

    async def _locked(self, conn: AsyncConnection, principal: Principal, task_id: str) -> Task:
        task = await self._repo.lock_current(conn, task_id) if task_id else None
        if task is None or not principal.can_see(task.project):
            raise NotFound(f"task '{task_id}' not found")
        principal.require_project(task.project)
        return task

    async def update(self, principal: Principal, changes: TaskChanges) -> Task:
        """Apply the masked fields as a new version."""
        paths = _check_mask(changes.paths, _TASK_FIELDS)
        compiled = self.compile(changes.response_schema or {}) if "response_schema" in paths else None
        async with self._engine.begin() as conn:
            current = await self._locked(conn, principal, changes.id)
            check_etag(changes.etag, current.etag, what="task")
            updated = current
            if "name" in paths:
                updated = replace(updated, name=validate_name(changes.name, field="task.name"))
            if "description" in paths:
                updated = replace(
                    updated,
                    description=_check_text(
                        changes.description, field_path="task.description", limit=DESCRIPTION_MAX_CHARS
                    ),
                )
            if "instructions" in paths:
                updated = replace(
                    updated,
                    instructions=_check_text(
                        changes.instructions, field_path="task.instructions", limit=TEXT_MAX_CHARS
                    ),
                )
            if "prompt_template" in paths:
                updated = replace(updated, prompt_template=self._checked_template(changes.prompt_template))
            # A reordered schema is a change (the model sees the new order), although the
            # dicts compare equal: decided by the ordered hash, not by `==`.
            schema_changed = False
            if compiled is not None and compiled.ordered_hash != ordered_hash(current.response_schema):
                updated = replace(
                    updated, response_schema=changes.response_schema or {}, schema_hash=compiled.schema_hash
                )
                schema_changed = True
            if updated == current and not schema_changed:
                return current
            updated = replace(updated, version=current.version + 1, update_time=utcnow())
            await self._repo.add_version(conn, updated)
            staged = await self._outbox.add(conn, self._event(updated, "updated", principal.key_id))
        self._outbox.committed(*staged)
        self._forget_head("tasks", updated.id)
        return updated

    async def delete(self, principal: Principal, task_id: str, *, etag: str) -> Task:
        """Delete a task (its versions stay for run history)."""
        async with self._engine.begin() as conn:
            current = await self._locked(conn, principal, task_id)
            check_etag(etag, current.etag, what="task")
            await self._repo.mark_deleted(conn, current.id, when=utcnow())
            staged = await self._outbox.add(conn, self._event(current, "deleted", principal.key_id))
        self._outbox.committed(*staged)
        self._forget_head("tasks", current.id)
        return current

    async def list_page(
        self, principal: Principal, *, page_size_: int, page_token: str, project: str
    ) -> tuple[list[Task], str]:
        """A page of current versions."""
        size = page_size(page_size_)
        if project:
            validate_name(project, field="project")
        visible = principal.visible_projects(project)
        filters = {"project": visible}
        position = decode_page_token(page_token, filters, arity=2)
        after = (str(position[0]), str(position[1])) if position else None
        async with self._engine.connect() as conn:
            rows = await self._repo.list_page(conn, project=visible, after=after, limit=size + 1)
        page, more = rows[:size], len(rows) > size
        token = encode_page_token((page[-1].project, page[-1].name), filters) if more and page else ""
        return page, token

    async def list_versions(
        self, principal: Principal, task_id: str, *, page_size_: int, page_token: str
    ) -> tuple[list[Task], str]:
        """A page of a task's versions, newest first."""
        await self.get(principal, task_id)
        size = page_size(page_size_)
        filters = {"task": task_id}
        position = decode_page_token(page_token, filters, arity=1)
        before = int(position[0]) if position else None
        async with self._engine.connect() as conn:
            rows = await self._repo.list_versions(conn, task_id, before=before, limit=size + 1)
        page, more = rows[:size], len(rows) > size
        token = encode_page_token((page[-1].version,), filters) if more and page else ""
        return page, token
