"""Task versions keep their response_schema's key order: `json` instead of `jsonb`.

JSONB stores objects with their keys sorted (shortest first), so a schema came back in
another order than its author wrote, and the model was shown it in that order although
property order steers what a model writes first. `json` keeps the text as written.
Existing rows are converted as they are (their original order is already lost).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from alembic import op
from sqlalchemy.dialects.postgresql import JSON, JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = "agent_svc"


def upgrade() -> None:
    op.alter_column(
        "task_versions",
        "response_schema",
        type_=JSON,
        existing_type=JSONB,
        existing_nullable=False,
        postgresql_using="response_schema::json",
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.alter_column(
        "task_versions",
        "response_schema",
        type_=JSONB,
        existing_type=JSON,
        existing_nullable=False,
        postgresql_using="response_schema::jsonb",
        schema=SCHEMA,
    )
