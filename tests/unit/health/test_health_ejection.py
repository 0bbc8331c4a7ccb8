"""Envoy-style ejection: the threshold, the back-off growth and its cap, half-open, the percentage."""

from __future__ import annotations

from services.health.ejection import (
    Circuit,
    EjectionPolicy,
    Outlier,
    ejection_allowed,
    record_failure,
    record_success,
)

POLICY = EjectionPolicy(consecutive_failures=5, base_seconds=30, max_seconds=300, max_percent=50)


def fail(o: Outlier, now: float, *, active: bool = False, may_eject: bool = True) -> Outlier:
    return record_failure(o, now, POLICY, active=active, may_eject=may_eject)


def test_five_consecutive_failures_eject_for_the_base_time() -> None:
    o = Outlier()
    for i in range(4):
        o = fail(o, 100.0 + i)
        assert o.circuit(100.0 + i) is Circuit.CLOSED
    o = fail(o, 104.0)
    assert o.circuit(104.0) is Circuit.OPEN
    assert o.ejections == 1
    assert o.ejected_until == 134.0


def test_a_success_resets_the_count() -> None:
    o = Outlier()
    for i in range(4):
        o = fail(o, float(i))
    o = record_success(o, 5.0)
    o = fail(o, 6.0)
    assert o.consecutive_failures == 1
    assert o.circuit(6.0) is Circuit.CLOSED


def test_back_off_grows_with_each_ejection_and_stops_at_the_cap() -> None:
    o = Outlier()
    now = 1000.0
    for i in range(5):
        o = fail(o, now + i)
    now += 4
    durations = [o.ejected_until - now]
    for _ in range(12):
        now = o.ejected_until
        assert o.circuit(now) is Circuit.HALF_OPEN  # the ejection ended: the next outcome decides
        o = fail(o, now)  # a half-open failure ejects again at once
        durations.append(o.ejected_until - now)
    assert durations[:4] == [30, 60, 90, 120]
    assert durations[9:] == [300, 300, 300, 300]
    assert o.ejections == 13


def test_half_open_success_closes_and_later_calm_forgets_ejections() -> None:
    o = Outlier()
    for i in range(5):
        o = fail(o, float(i))
    assert o.circuit(4.0) is Circuit.OPEN
    o = record_success(o, 40.0)
    assert o.circuit(40.0) is Circuit.CLOSED
    assert o.closed_at == 40.0
    # Ten minutes closed forget the earlier ejection: the next one is the base time again.
    for i in range(5):
        o = fail(o, 640.0 + i)
    assert o.ejections == 1
    assert o.ejected_until == 644.0 + 30


def test_failures_while_ejected_do_not_extend_the_ejection() -> None:
    o = Outlier()
    for i in range(5):
        o = fail(o, float(i))
    until = o.ejected_until
    o = fail(o, 10.0)
    assert o.ejected_until == until
    assert o.consecutive_failures == 6


def test_a_failed_probe_ejects_at_once_and_a_good_one_half_opens() -> None:
    o = fail(Outlier(), 50.0, active=True)
    assert o.circuit(50.0) is Circuit.OPEN
    o = record_success(o, 51.0)
    assert o.circuit(51.0) is Circuit.HALF_OPEN
    assert o.ejected_until == 0
    o = record_success(o, 52.0)
    assert o.circuit(52.0) is Circuit.CLOSED


def test_the_maximum_percentage_holds_back_passive_ejection() -> None:
    o = Outlier()
    for i in range(10):
        o = fail(o, float(i), may_eject=False)
    assert o.circuit(10.0) is Circuit.CLOSED
    assert o.consecutive_failures == 10


def test_ejection_allowed_respects_the_percentage_but_always_allows_one() -> None:
    assert ejection_allowed(0, 1, POLICY)
    assert ejection_allowed(0, 4, EjectionPolicy(max_percent=0))
    assert ejection_allowed(1, 4, POLICY)  # 2 of 4 = 50 %
    assert not ejection_allowed(2, 4, POLICY)  # 3 of 4 > 50 %
    assert not ejection_allowed(1, 3, POLICY)
