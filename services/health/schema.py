"""The health service's tables: the current record of each target, the probe history, and maintenance.

Times are integer milliseconds since the epoch (wall clock, shared by every replica).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Float, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

targets = Table(
    "health_targets",
    metadata,
    Column("provider", String(200), primary_key=True),
    Column("base_url", String(1000), primary_key=True),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("ejections", Integer, nullable=False, default=0),
    Column("ejected_until_ms", BigInteger, nullable=False, default=0),
    Column("half_open", Boolean, nullable=False, default=False),
    Column("closed_at_ms", BigInteger, nullable=False, default=0),
    Column("last_failure_ms", BigInteger, nullable=False, default=0),
    Column("latency_ms", Float, nullable=False, default=0.0),
    Column("last_checked_ms", BigInteger, nullable=False, default=0),
    Column("last_success_ms", BigInteger, nullable=False, default=0),
    Column("last_error", Text, nullable=False, default=""),
    Column("p50_ms", Float, nullable=False, default=0.0),
    Column("p90_ms", Float, nullable=False, default=0.0),
    Column("p99_ms", Float, nullable=False, default=0.0),
    # The next active probe is due then; the replica whose guarded update moves it forward probes.
    Column("probe_due_ms", BigInteger, nullable=False, default=0),
    Column("updated_ms", BigInteger, nullable=False, default=0),
    # Moving average of the latency of answered calls that routers report.
    Column("latency_ewma_ms", Float, nullable=False, default=0.0),
)

probes = Table(
    "health_probes",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("provider", String(200), nullable=False),
    Column("base_url", String(1000), nullable=False),
    Column("checked_ms", BigInteger, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("http_status", Integer, nullable=False),
    Column("error", Text, nullable=False),
    Index("ix_health_probes_target_checked", "provider", "base_url", "checked_ms"),
    Index("ix_health_probes_checked", "checked_ms"),
)

# A provider an admin holds down or up, whatever probes and outcomes say; no row: automatic.
maintenance = Table(
    "health_maintenance",
    metadata,
    Column("provider", String(200), primary_key=True),
    Column("state", String(8), nullable=False),  # down | up
    Column("reason", Text, nullable=False),
    Column("actor", String(300), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
)

# Every maintenance change (auto included): who, when, why. Append-only.
maintenance_audit = Table(
    "health_maintenance_audit",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("provider", String(200), nullable=False),
    Column("state", String(8), nullable=False),  # down | up | auto
    Column("reason", Text, nullable=False),
    Column("actor", String(300), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Index("ix_health_maintenance_audit_provider", "provider", "id"),
)
