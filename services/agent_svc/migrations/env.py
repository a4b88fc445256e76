"""Alembic environment of agent_svc (schema `agent_svc`)."""

from libs.common.migrate import run_env

run_env()
