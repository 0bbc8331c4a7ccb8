"""Maintenance: an admin holds a provider down (never chosen) or up (whatever probes say), or hands it back.

A hold is per provider, for all its endpoints, stored durably and followed by every replica; each change,
`auto` included, is appended to an audit trail naming who made it, when and why.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.runtime.errors import DomainError

STATES = ("down", "up", "auto")
MAX_REASON = 500


@dataclass(frozen=True, slots=True)
class Hold:
    """A provider held down or up by an admin; times in wall-clock seconds."""

    provider: str
    state: str  # down | up
    reason: str
    actor: str
    at: float


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of the audit trail."""

    id: int
    provider: str
    state: str  # down | up | auto
    reason: str
    actor: str
    at: float


def checked(state: str, reason: str) -> tuple[str, str]:
    """The state and reason of a request to change a hold, or a DomainError naming the bad field."""
    state = state.strip().lower()
    if state not in STATES:
        raise DomainError("invalid_request", f"state must be one of {', '.join(STATES)}", "state")
    reason = reason.strip()
    if len(reason) > MAX_REASON:
        raise DomainError("invalid_request", f"reason must be at most {MAX_REASON} characters", "reason")
    if not reason.isprintable():
        raise DomainError("invalid_request", "reason must be printable text on one line", "reason")
    if state != "auto" and not reason:
        raise DomainError("invalid_request", f"forcing a provider {state} needs a reason", "reason")
    return state, reason
