"""Alembic environment of the health service (see services.runtime.db)."""

from services.runtime.db import run_migrations_env

run_migrations_env()
