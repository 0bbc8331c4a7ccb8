"""Outages are answered, not crashed on: a database that is away is a 503 with `Retry-After`, said once in
the log; a rate limit's `Retry-After` is the time to the end of its window."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from services.runtime import db
from services.runtime.db import create_engine, outage, ping, unreachable
from services.runtime.errors import DomainError, unhandled
from services.runtime.ratelimit import MemoryCounters, Window


class _Refused(OSError):
    pass


def test_a_database_that_is_away_is_told_from_a_bad_query() -> None:
    assert unreachable(ConnectionRefusedError(111, "refused"))
    cut = DBAPIError("SELECT 1", {}, _Refused("cut"), connection_invalidated=True)
    assert unreachable(cut)
    assert unreachable(OperationalError("SELECT 1", {}, Exception("could not connect to server")))
    assert not unreachable(OperationalError("SELECT 1", {}, Exception("database is locked")))
    assert not unreachable(IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not unreachable(ValueError("a bug"))


def test_an_outage_is_a_503_with_retry_after_and_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    outage.down = False
    caplog.set_level(logging.INFO)
    for _ in range(50):
        err = unhandled(test_an_outage_is_a_503_with_retry_after_and_one_log_line, ConnectionRefusedError(111, "x"))
        assert err.code == "service_unavailable" and err.kind.http_status == 503
        assert err.kind.grpc_status is grpc.StatusCode.UNAVAILABLE
        assert err.headers == {"retry-after": str(db.RETRY_AFTER_SECONDS)}
    lines = [r for r in caplog.records if r.name == "tollgate.db"]
    assert [r.levelname for r in lines] == ["ERROR"] and "unreachable" in lines[0].getMessage()
    assert not [r for r in caplog.records if r.name == "tollgate.errors"]  # no traceback per call


def test_a_bug_stays_an_internal_error_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    err = unhandled(test_a_bug_stays_an_internal_error_with_its_traceback, KeyError("oops"))
    assert err.code == "internal_error"
    assert [r.exc_info is not None for r in caplog.records if r.name == "tollgate.errors"] == [True]


async def test_readiness_says_once_the_database_is_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    outage.down = False
    outage.went(ConnectionRefusedError())
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        assert await ping(engine) and await ping(engine)
    finally:
        await engine.dispose()
    said = [r.getMessage() for r in caplog.records if r.name == "tollgate.db" and "reachable" in r.getMessage()]
    assert said == [
        "database unreachable (ConnectionRefusedError); answering 503 until it is back",
        "database reachable again",
    ]


async def test_rate_limit_retry_after_ends_with_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    counters = MemoryCounters()
    start = 1_800_000_000.0 - 12.0  # twelve seconds before a minute ends (wall clock)
    now: dict[str, Any] = {"t": start}
    monkeypatch.setattr(time, "time", lambda: now["t"])
    window = (Window("rl:key:k:30000000", 1, True),)
    assert (await counters.check(window, 60)).allowed
    refused = await counters.check(window, 60)
    assert not refused.allowed and 11.0 < refused.retry_after <= 12.0


def test_domain_errors_compare_without_their_headers() -> None:
    a = DomainError("service_unavailable", "away")
    a.headers["retry-after"] = "2"
    assert a == DomainError("service_unavailable", "away")
