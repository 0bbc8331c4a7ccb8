"""How one provider endpoint's health state reads as JSON, the same on every surface that shows it
(the gateway's `/v1/providers`, `tollgate health show --json`)."""

from __future__ import annotations

from typing import Any

from tollgate.health.v1 import health_pb2


def state_name(value: int) -> str:
    return health_pb2.State.Name(value).removeprefix("STATE_").lower()


def maintenance(state: health_pb2.ProviderState) -> dict[str, Any] | None:
    """The admin's hold on the provider (`down` or `up`, why, by whom, since when), or None."""
    if not state.forced:
        return None
    return {
        "state": state.forced,
        "reason": state.forced_reason,
        "by": state.forced_by,
        "since_unix_ms": state.forced_unix_ms,
    }


def endpoint(state: health_pb2.ProviderState) -> dict[str, Any]:
    return {
        "provider": state.provider,
        "base_url": state.base_url,
        "state": state_name(state.state),
        "latency_ms": round(state.latency_ms, 1),
        "p50_ms": round(state.p50_ms, 1),
        "p90_ms": round(state.p90_ms, 1),
        "p99_ms": round(state.p99_ms, 1),
        "latency_ewma_ms": round(state.latency_ewma_ms, 1),
        "last_checked_unix_ms": state.last_checked_unix_ms,
        "consecutive_failures": state.consecutive_failures,
        "ejected": state.ejected,
        "ejected_until_unix_ms": state.ejected_until_unix_ms,
        "ejections": state.ejections,
        "last_failure_unix_ms": state.last_failure_unix_ms,
        "last_error": state.last_error,
        "maintenance": maintenance(state),
    }


def change(record: health_pb2.MaintenanceRecord) -> dict[str, Any]:
    """One entry of the maintenance audit trail."""
    return {
        "id": record.id,
        "provider": record.provider,
        "state": record.state,
        "reason": record.reason,
        "actor": record.actor,
        "at_unix_ms": record.at_unix_ms,
    }
