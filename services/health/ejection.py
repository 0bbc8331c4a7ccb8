"""Envoy-style outlier ejection of one target: pure functions of the record, the outcome and the time.

A target is *closed* (traffic flows), *open* (ejected until a moment) or *half-open* (the ejection ended
or a probe succeeded; the next outcome decides). Passive failures eject after `consecutive_failures` in a
row, never past `max_percent` of the targets (one target may always be ejected); a failed active probe
ejects at once, because it checked the provider itself. Each ejection lasts `base_seconds` times the
number of ejections, capped at `max_seconds`; every `base_seconds` spent closed forgets one ejection.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum


class Circuit(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class EjectionPolicy:
    consecutive_failures: int = 5
    base_seconds: float = 30.0
    max_seconds: float = 300.0
    max_percent: int = 50


@dataclass(frozen=True, slots=True)
class Outlier:
    """The ejection record of one target; times are wall-clock seconds, 0 meaning never."""

    consecutive_failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0
    half_open: bool = False
    closed_at: float = 0.0
    last_failure: float = 0.0

    def circuit(self, now: float) -> Circuit:
        if self.ejected_until > now:
            return Circuit.OPEN
        if self.ejected_until > 0 or self.half_open:
            return Circuit.HALF_OPEN
        return Circuit.CLOSED


def ejection_allowed(ejected: int, total: int, policy: EjectionPolicy) -> bool:
    """Whether one more of `total` targets may be ejected while `ejected` already are."""
    return ejected == 0 or (ejected + 1) * 100 <= policy.max_percent * total


def eject(outlier: Outlier, now: float, policy: EjectionPolicy) -> Outlier:
    ejections = outlier.ejections
    if outlier.circuit(now) is Circuit.CLOSED and outlier.closed_at > 0:
        ejections = max(0, ejections - int((now - outlier.closed_at) // policy.base_seconds))
    ejections += 1
    duration = min(policy.base_seconds * ejections, policy.max_seconds)
    return replace(outlier, ejections=ejections, ejected_until=now + duration, half_open=False)


def record_success(outlier: Outlier, now: float) -> Outlier:
    """A success closes a half-open target and moves an ejected one to half-open."""
    circuit = outlier.circuit(now)
    if circuit is Circuit.OPEN:
        return replace(outlier, consecutive_failures=0, ejected_until=0.0, half_open=True)
    if circuit is Circuit.HALF_OPEN:
        return replace(outlier, consecutive_failures=0, ejected_until=0.0, half_open=False, closed_at=now)
    return replace(outlier, consecutive_failures=0)


def record_failure(outlier: Outlier, now: float, policy: EjectionPolicy, *, active: bool, may_eject: bool) -> Outlier:
    """One more failure: a failed probe or a half-open failure ejects; passive ones after the threshold.

    `may_eject` says whether the maximum ejection percentage leaves room for one more passive ejection.
    """
    failed = replace(outlier, consecutive_failures=outlier.consecutive_failures + 1, last_failure=now)
    circuit = outlier.circuit(now)
    if circuit is Circuit.OPEN:
        return failed
    if circuit is Circuit.HALF_OPEN or active:
        return eject(failed, now, policy)
    if failed.consecutive_failures >= policy.consecutive_failures and may_eject:
        return eject(failed, now, policy)
    return failed
