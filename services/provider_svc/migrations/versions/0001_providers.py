"""Providers and the outbox.

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

SCHEMA = "provider_svc"


def upgrade() -> None:
    op.create_table(
        "providers",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("project", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("base_url", sa.Text, nullable=False, server_default=""),
        sa.Column("config", JSONB, nullable=False, server_default="{}"),
        sa.Column("api_key_ciphertext", sa.LargeBinary, nullable=True),
        sa.Column("api_key_fingerprint", sa.Text, nullable=True),
        sa.Column("api_key_hint", sa.Text, nullable=False, server_default=""),
        sa.Column("validation_status", sa.Text, nullable=False),
        sa.Column("validation_detail", sa.Text, nullable=False, server_default=""),
        sa.Column("validation_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("validation_models", JSONB, nullable=False, server_default="[]"),
        sa.Column("next_check_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("validate_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("create_request_id", sa.Text, nullable=True),
        sa.Column("create_request_hash", sa.Text, nullable=True),
        sa.UniqueConstraint("project", "name", name="providers_project_name_key"),
        sa.UniqueConstraint("project", "create_request_id", name="providers_project_request_id_key"),
        schema=SCHEMA,
    )
    op.create_index(
        "providers_next_check_idx",
        "providers",
        ["next_check_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("next_check_at IS NOT NULL"),
    )
    op.create_index("providers_key_fingerprint_idx", "providers", ["api_key_fingerprint"], schema=SCHEMA)
    create_outbox_table(SCHEMA)


def downgrade() -> None:
    op.drop_table("outbox", schema=SCHEMA)
    op.drop_table("providers", schema=SCHEMA)
