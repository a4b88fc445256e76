"""Alembic environment of provider_svc (schema `provider_svc`)."""

from libs.common.migrate import run_env

run_env()
