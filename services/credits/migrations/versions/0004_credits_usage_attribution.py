"""credits: usage rows carry cached and reasoning tokens, the end user and tags

Five columns on `usage`: `cache_read_tokens` and `cache_write_tokens` (parts of `prompt_tokens`),
`reasoning_tokens` (part of `completion_tokens`), `end_user` (the body's OpenAI `user`) and `tags`
(a JSON object of the body's `metadata` and the X-Tollgate-Tags header). On PostgreSQL `credits_settle`
and `credits_release` take the five as further usage arguments: the functions of migration 0002 with
the usage row's column list and arguments extended, nothing else changed.

Revision ID: 0004_credits_usage_attribution
Revises: 0003_credits_first_use
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

revision = "0004_credits_usage_attribution"
down_revision = "0003_credits_first_use"
branch_labels = None
depends_on = None

NEW_ARGS = (
    ", p_cache_read_tokens bigint, p_cache_write_tokens bigint, p_reasoning_tokens bigint, p_end_user text, p_tags json"
)
NEW_COLUMNS = ", cache_read_tokens, cache_write_tokens, reasoning_tokens, end_user, tags"
NEW_VALUES = ", p_cache_read_tokens, p_cache_write_tokens, p_reasoning_tokens, p_end_user, p_tags"


def _procedures() -> ModuleType:
    """Migration 0002, whose function texts this one extends."""
    path = Path(__file__).with_name("0002_credits_procedures.py")
    spec = importlib.util.spec_from_file_location("credits_0002_procedures", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _extended(sql: str, old: ModuleType) -> str:
    args = old.USAGE_ARGS.rstrip()
    columns = "decision, created_at)"
    values = "p_decision, p_now)"
    for part in (args, columns, values):
        if sql.count(part) != 1:
            raise RuntimeError(f"migration 0004: the 0002 function text changed ({part!r})")
    return (
        sql.replace(args, args + NEW_ARGS)
        .replace(columns, "decision, created_at" + NEW_COLUMNS + ")")
        .replace(values, "p_decision, p_now" + NEW_VALUES + ")")
    )


def upgrade() -> None:
    op.add_column("usage", sa.Column("cache_read_tokens", sa.BigInteger, nullable=False, server_default="0"))
    op.add_column("usage", sa.Column("cache_write_tokens", sa.BigInteger, nullable=False, server_default="0"))
    op.add_column("usage", sa.Column("reasoning_tokens", sa.BigInteger, nullable=False, server_default="0"))
    op.add_column("usage", sa.Column("end_user", sa.String(256), nullable=False, server_default=""))
    op.add_column("usage", sa.Column("tags", sa.JSON, nullable=True))
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        old = _procedures()
        bind.exec_driver_sql("DROP FUNCTION credits_settle")
        bind.exec_driver_sql("DROP FUNCTION credits_release")
        bind.exec_driver_sql(_extended(old.SETTLE, old))
        bind.exec_driver_sql(_extended(old.RELEASE, old))


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        old = _procedures()
        bind.exec_driver_sql("DROP FUNCTION credits_settle")
        bind.exec_driver_sql("DROP FUNCTION credits_release")
        bind.exec_driver_sql(old.SETTLE)
        bind.exec_driver_sql(old.RELEASE)
    for column in ("tags", "end_user", "reasoning_tokens", "cache_write_tokens", "cache_read_tokens"):
        op.drop_column("usage", column)
