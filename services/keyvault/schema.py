"""keyvault's tables. Times are integer unix milliseconds, as on the wire; money-free, secret-free columns only
(hashes, masked forms, fingerprints and sealed blobs)."""

from __future__ import annotations

import time

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(40), primary_key=True),
    Column("user_id", String(200), nullable=False, index=True),
    Column("name", String(200), nullable=False, default=""),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(40), nullable=False),
    Column("scopes", String(100), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=True),
    Column("revoked_at", BigInteger, nullable=True),
    Column("last_used_at", BigInteger, nullable=True),
    Column("rpm_limit", Integer, nullable=False, default=0),
    Column("tpm_limit", Integer, nullable=False, default=0),
    # The key's access policy as JSON (`policies.py`); "" for none.
    Column("policy", Text, nullable=False, default=""),
)

teams = Table(
    "teams",
    metadata,
    Column("team_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False, default=""),
    Column("pooled", Boolean, nullable=False, default=False),
    Column("policy", Text, nullable=False, default=""),
    Column("created_at", BigInteger, nullable=False),
)

# One row per user: a user belongs to at most one team.
team_members = Table(
    "team_members",
    metadata,
    Column("user_id", String(200), primary_key=True),
    Column("team_id", String(64), ForeignKey("teams.team_id"), nullable=False, index=True),
    Column("role", String(20), nullable=False),
    Column("added_at", BigInteger, nullable=False),
)

provider_keys = Table(
    "provider_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key_id", String(40), nullable=False, unique=True),
    Column("user_id", String(200), nullable=False),
    Column("provider", String(100), nullable=False),
    Column("label", String(200), nullable=False, default=""),
    Column("masked", String(40), nullable=False),
    Column("fingerprint", String(32), nullable=False),
    Column("master_key_version", Integer, nullable=False, index=True),
    # Bumped by every write; rotation's compare-and-swap writes only over the revision it read.
    Column("revision", Integer, nullable=False, default=1),
    Column("sealed", LargeBinary, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("last_used_at", BigInteger, nullable=True),
    UniqueConstraint("user_id", "provider", name="uq_provider_keys_user_provider"),
)

master_keys = Table(
    "master_keys",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("check_value", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("retired_at", BigInteger, nullable=True),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", BigInteger, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(60), nullable=False),
    Column("user_id", String(200), nullable=False, default=""),
    Column("key_id", String(40), nullable=False, default=""),
    Column("fingerprint", String(32), nullable=False, default=""),
    Column("outcome", String(20), nullable=False),
    Column("detail", String(500), nullable=False, default=""),
    Index("ix_audit_events_user_at", "user_id", "at"),
)


def now_ms() -> int:
    return int(time.time() * 1000)
