"""Alembic environment of credits: runs on the connection `services.runtime.db.migrate` passes in."""

from services.runtime.db import run_migrations_env

run_migrations_env()
