"""Provider state derived from a target's record, outcomes applied to it, latency percentiles."""

from __future__ import annotations

from dataclasses import replace

from services.health.ejection import EjectionPolicy, Outlier
from services.health.probes import ProbeResult, judge
from services.health.state import (
    HealthState,
    Outcome,
    TargetRecord,
    after_outcome,
    after_probe,
    assess,
    needs_recording,
    percentiles,
)

POLICY = EjectionPolicy()


def state(record: TargetRecord, now: float = 100.0) -> HealthState:
    return assess(record, now, degraded_latency_ms=1000).state


def test_states_from_records() -> None:
    fresh = TargetRecord("p", "http://h/v1")
    assert state(fresh) is HealthState.UNKNOWN
    fine = replace(fresh, last_checked=90, last_success=90, latency_ms=20)
    assert state(fine) is HealthState.HEALTHY
    assert state(replace(fine, latency_ms=1500)) is HealthState.DEGRADED
    assert state(replace(fine, outlier=Outlier(consecutive_failures=2))) is HealthState.DEGRADED
    ejected = replace(fine, outlier=Outlier(ejections=1, ejected_until=130))
    assert state(ejected) is HealthState.DOWN
    assert state(ejected, now=131) is HealthState.DEGRADED  # half-open once the ejection ends
    status = assess(ejected, 100, 1000)
    assert status.ejected and status.ejected_until == 130
    assert not assess(ejected, 131, 1000).ejected


def test_a_failed_probe_marks_down_and_two_good_ones_recover_through_half_open() -> None:
    record = TargetRecord("p", "http://h/v1")
    record = after_probe(record, ProbeResult(False, 3.0, 0, "cannot connect (ConnectError)", 10.0), POLICY)
    assert state(record, 10) is HealthState.DOWN
    assert record.last_error == "cannot connect (ConnectError)"
    record = after_probe(record, ProbeResult(True, 4.0, 200, "", 11.0), POLICY)
    status = assess(record, 11, 1000)
    assert status.state is HealthState.DEGRADED and not status.ejected
    record = after_probe(record, ProbeResult(True, 4.0, 200, "", 12.0), POLICY)
    assert state(record, 12) is HealthState.HEALTHY


def test_reported_errors_are_redacted_and_bounded() -> None:
    record = TargetRecord("p", "http://h/v1")
    secret = "sk-" + "a" * 40
    outcome = Outcome(False, 10, 401, f"Incorrect API key provided: {secret} " + "x" * 1000)
    record = after_outcome(record, outcome, 5.0, POLICY, may_eject=True)
    assert secret not in record.last_error
    assert record.last_error.startswith("HTTP 401: ")
    assert len(record.last_error) < 400


def test_only_changing_outcomes_need_recording() -> None:
    known = TargetRecord("p", "http://h/v1", last_checked=1, last_success=1)
    assert not needs_recording(known, Outcome(True), 2)
    assert needs_recording(known, Outcome(False), 2)
    assert needs_recording(TargetRecord("p", "http://h/v1"), Outcome(True), 2)
    failing = replace(known, outlier=Outlier(consecutive_failures=1))
    assert needs_recording(failing, Outcome(True), 2)


def test_percentiles_nearest_rank() -> None:
    assert percentiles([]) == (0.0, 0.0, 0.0)
    assert percentiles([5.0]) == (5.0, 5.0, 5.0)
    samples = [float(i) for i in range(1, 101)]
    assert percentiles(samples) == (50.0, 90.0, 99.0)


def test_probe_answers_judged() -> None:
    assert judge(200, keyed=True) == (True, "")
    assert judge(401, keyed=False) == (True, "")  # reachable; no platform key to check
    assert judge(401, keyed=True)[0] is False
    assert judge(503, keyed=False) == (False, "GET /models answered HTTP 503")
    assert judge(404, keyed=False)[0] is False
