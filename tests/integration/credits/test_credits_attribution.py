"""Usage rows keep the cached/reasoning split and attribution (end user, key, tags) on every path that writes
one (settle, release, free usage), and the listing and summary filter and group by them, on both databases."""

from __future__ import annotations

import pytest

from services.credits import holds, usage
from services.credits.ledger import Ledger
from services.credits.usage import UsageEntry, UsageFilter
from services.runtime.errors import DomainError


def _entry(request_id: str, **fields: object) -> UsageEntry:
    return UsageEntry(request_id=request_id, user_id="ignored", model="m", provider="p", **fields)  # type: ignore[arg-type]


async def _settled(ledger: Ledger, user: str, request_id: str, cost: int, entry: UsageEntry) -> None:
    hold_id, _ = await holds.reserve(ledger, user, 10_000, f"{request_id}:reserve", request_id)
    await holds.settle(ledger, hold_id, cost, f"{request_id}:settle", entry)


async def _seed(ledger: Ledger) -> None:
    await _settled(
        ledger,
        "ann",
        "a1",
        700,
        _entry(
            "a1",
            api_key_id="k1",
            prompt_tokens=100,
            completion_tokens=50,
            cache_read_tokens=60,
            cache_write_tokens=10,
            reasoning_tokens=20,
            end_user="alice@example.com",
            tags={"agent": "planner", "team": "core"},
        ),
    )
    await _settled(ledger, "ann", "a2", 300, _entry("a2", api_key_id="k2", prompt_tokens=10, tags={"agent": "coder"}))
    hold_id, _ = await holds.reserve(ledger, "ann", 10_000, "a3:reserve", "a3")
    await holds.release(
        ledger, hold_id, "a3:release", _entry("a3", api_key_id="k1", status="error", tags={"agent": "planner"})
    )
    await usage.record_usage(ledger, UsageEntry(request_id="a4", user_id="ann", end_user="bob"), "a4:usage")
    # Another user's row with the same tag: never in ann's figures.
    await _settled(ledger, "eve", "e1", 5000, _entry("e1", prompt_tokens=9, tags={"agent": "planner"}))


async def test_rows_keep_the_split_and_attribution(ledger: Ledger) -> None:
    await _seed(ledger)
    rows, _ = await usage.list_usage(ledger, "ann")
    by_request = {r.entry.request_id: r.entry for r in rows}
    first = by_request["a1"]
    assert (first.cache_read_tokens, first.cache_write_tokens, first.reasoning_tokens) == (60, 10, 20)
    assert (first.end_user, first.tags, first.api_key_id) == (
        "alice@example.com",
        {"agent": "planner", "team": "core"},
        "k1",
    )
    assert by_request["a3"].status == "error" and by_request["a3"].tags == {"agent": "planner"}
    assert by_request["a4"].end_user == "bob" and by_request["a4"].tags == {}


async def test_summary_groups_and_filters_by_attribution(ledger: Ledger) -> None:
    await _seed(ledger)
    by_agent = await usage.summary(ledger, "ann", "tag:agent")
    assert [(g.key, g.requests, g.cost_micro) for g in by_agent] == [("", 1, 0), ("coder", 1, 300), ("planner", 2, 700)]
    planner = next(g for g in by_agent if g.key == "planner")
    assert (planner.cache_read_tokens, planner.cache_write_tokens, planner.reasoning_tokens) == (60, 10, 20)
    by_key = await usage.summary(ledger, "ann", "key")
    assert [(g.key, g.requests) for g in by_key] == [("", 1), ("k1", 2), ("k2", 1)]
    assert [(g.key, g.requests) for g in await usage.summary(ledger, "ann", "end_user")] == [
        ("", 2),
        ("alice@example.com", 1),
        ("bob", 1),
    ]
    only = UsageFilter(tags={"agent": "planner", "team": "core"})
    assert [(g.key, g.cost_micro) for g in await usage.summary(ledger, "ann", "model", only=only)] == [("m", 700)]
    rows, _ = await usage.list_usage(ledger, "ann", only=UsageFilter(api_key_id="k1", tags={"agent": "planner"}))
    assert sorted(r.entry.request_id for r in rows) == ["a1", "a3"]
    # An admin (no user) sees every user's rows under the same filter.
    everyone = await usage.summary(ledger, "", "user", only=UsageFilter(tags={"agent": "planner"}))
    assert [(g.key, g.cost_micro) for g in everyone] == [("ann", 700), ("eve", 5000)]


async def test_bad_attribution_is_refused(ledger: Ledger) -> None:
    with pytest.raises(DomainError) as err:
        await usage.summary(ledger, "ann", "tag:a'b")
    assert err.value.param == "group_by"
    with pytest.raises(DomainError) as err:
        await usage.list_usage(ledger, "ann", only=UsageFilter(tags={f"t{n}": "v" for n in range(17)}))
    assert err.value.param == "tag"
    with pytest.raises(DomainError) as err:
        await usage.record_usage(ledger, UsageEntry("r", "ann", prompt_tokens=5, cache_read_tokens=6), "r:usage")
    assert err.value.param == "usage.cache_read_tokens"
    with pytest.raises(DomainError) as err:
        await usage.record_usage(ledger, UsageEntry("r", "ann", tags={"agent": "x" * 513}), "r:usage")
    assert err.value.param == "usage.tags.agent"
