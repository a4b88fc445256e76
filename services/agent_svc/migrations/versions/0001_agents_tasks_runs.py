"""Agents, tasks (both versioned), runs and the outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from libs.common.migrate import create_outbox_table

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "agent_svc"
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("project", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("provider_id", sa.Text, nullable=False),
        sa.Column("labels", JSONB, nullable=False, server_default="{}"),
        sa.Column("create_time", TS, nullable=False),
        sa.Column("update_time", TS, nullable=False),
        sa.Column("deleted_time", TS, nullable=True),
        sa.Column("create_request_id", sa.Text, nullable=True),
        sa.Column("create_request_hash", sa.Text, nullable=True),
        sa.UniqueConstraint("project", "create_request_id", name="agents_project_request_id_key"),
        schema=SCHEMA,
    )
    op.create_index(
        "agents_live_name_key",
        "agents",
        ["project", "name"],
        unique=True,
        schema=SCHEMA,
        postgresql_where=sa.text("deleted_time IS NULL"),
    )
    op.create_index(
        "agents_provider_idx",
        "agents",
        ["provider_id"],
        schema=SCHEMA,
        postgresql_where=sa.text("deleted_time IS NULL"),
    )
    op.create_table(
        "agent_versions",
        sa.Column("agent_id", sa.Text, primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("project", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("provider_id", sa.Text, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("system_prompt", sa.Text, nullable=False),
        sa.Column("model_settings", JSONB, nullable=False),
        sa.Column("output_retries", sa.Integer, nullable=False),
        sa.Column("labels", JSONB, nullable=False),
        sa.Column("create_time", TS, nullable=False),
        sa.Column("update_time", TS, nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "tasks",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("project", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("create_time", TS, nullable=False),
        sa.Column("update_time", TS, nullable=False),
        sa.Column("deleted_time", TS, nullable=True),
        sa.Column("create_request_id", sa.Text, nullable=True),
        sa.Column("create_request_hash", sa.Text, nullable=True),
        sa.UniqueConstraint("project", "create_request_id", name="tasks_project_request_id_key"),
        schema=SCHEMA,
    )
    op.create_index(
        "tasks_live_name_key",
        "tasks",
        ["project", "name"],
        unique=True,
        schema=SCHEMA,
        postgresql_where=sa.text("deleted_time IS NULL"),
    )
    op.create_table(
        "task_versions",
        sa.Column("task_id", sa.Text, primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("project", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("instructions", sa.Text, nullable=False),
        sa.Column("prompt_template", sa.Text, nullable=False),
        sa.Column("response_schema", JSONB, nullable=False),
        sa.Column("schema_hash", sa.Text, nullable=False),
        sa.Column("create_time", TS, nullable=False),
        sa.Column("update_time", TS, nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("project", sa.Text, nullable=False),
        sa.Column("agent_id", sa.Text, nullable=False),
        sa.Column("agent_version", sa.Integer, nullable=False),
        sa.Column("task_id", sa.Text, nullable=False),
        sa.Column("task_version", sa.Integer, nullable=False),
        sa.Column("variables", JSONB, nullable=False),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("output", JSONB, nullable=True),
        sa.Column("error_code", sa.Text, nullable=True),
        sa.Column("error_message", sa.Text, nullable=True),
        sa.Column("usage_requests", sa.Integer, nullable=False, server_default="0"),
        sa.Column("usage_input_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("usage_output_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("latency_ms", sa.Integer, nullable=False, server_default="0"),
        sa.Column("create_time", TS, nullable=False),
        sa.Column("start_time", TS, nullable=True),
        sa.Column("end_time", TS, nullable=True),
        sa.Column("request_id", sa.Text, nullable=True),
        sa.Column("request_hash", sa.Text, nullable=True),
        sa.UniqueConstraint("project", "request_id", name="runs_project_request_id_key"),
        schema=SCHEMA,
    )
    op.create_index("runs_list_idx", "runs", ["project", "create_time", "id"], schema=SCHEMA)
    op.create_index("runs_agent_idx", "runs", ["agent_id", "create_time"], schema=SCHEMA)
    op.create_index("runs_task_idx", "runs", ["task_id", "create_time"], schema=SCHEMA)
    op.create_index("runs_status_idx", "runs", ["status", "create_time"], schema=SCHEMA)
    create_outbox_table(SCHEMA)


def downgrade() -> None:
    for table in ("outbox", "runs", "task_versions", "tasks", "agent_versions", "agents"):
        op.drop_table(table, schema=SCHEMA)
