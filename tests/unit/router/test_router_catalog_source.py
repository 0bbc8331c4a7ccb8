"""Reloading the catalog file (SIGHUP, ReloadCatalog) and whom a native gRPC call's allow-lists come from."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

import pytest

from services.router.callers import Callers
from services.router.catalog_source import CatalogSource, read
from services.router.health_view import HealthView
from services.router.pipeline import Router, Settings
from services.router.settings import RouterSettings
from services.runtime import identity
from services.runtime.errors import DomainError
from services.runtime.ratelimit import Limiter, MemoryCounters
from tollgate.keyvault.v1 import keyvault_pb2
from tollgate.router.v1 import router_pb2

from .conftest import FakeLedger, FakeVault

GOOD = """
version: 1
providers:
  p: {api_base: "http://127.0.0.1:1/v1"}
models:
  - {id: a, provider: p, tier: BALANCED, price: {input: 0.01, output: 0.02}}
"""
BIGGER = GOOD + "  - {id: b, provider: p, tier: BALANCED, price: {input: 0.01, output: 0.02}, rpm: 5}\n"
BAD = GOOD + "  - {id: c, tier: FREE, price: {input: 0, output: 0}, deployments: [{provider: p, weight: 0}]}\n"


@pytest.fixture
def source(tmp_path: Path) -> CatalogSource:
    path = tmp_path / "catalog.yaml"
    path.write_text(GOOD)
    catalog, digest = read(path)
    router = Router(catalog, Settings(default_power_level="BALANCED"), FakeLedger(), FakeVault(), HealthView())
    return CatalogSource(path, router, digest)


def test_a_valid_catalog_takes_effect_and_is_logged(source: CatalogSource, caplog: pytest.LogCaptureFixture) -> None:
    assert source.reload("tester").changed is False
    source.path.write_text(BIGGER)
    with caplog.at_level(logging.INFO, logger="tollgate.router.catalog"):
        done = source.reload("tester")
    assert (done.models, done.providers, done.changed) == (2, 1, True)
    assert source.router.catalog.models["b"].rpm == 5
    assert "catalog reloaded by tester" in caplog.text


def test_a_bad_catalog_is_refused_naming_the_entry_and_the_old_one_kept(
    source: CatalogSource, caplog: pytest.LogCaptureFixture
) -> None:
    before, digest = source.router.catalog, source.digest
    for text in (BAD, "models: [", GOOD.replace("BALANCED", "MIDDLING")):
        source.path.write_text(text)
        with caplog.at_level(logging.WARNING, logger="tollgate.router.catalog"), pytest.raises(DomainError) as err:
            source.reload("tester")
        assert err.value.code == "invalid_request" and err.value.param == "catalog"
        assert "the one in force is kept" in err.value.message
        assert source.router.catalog is before and source.digest == digest
    assert "model c: deployments: weights sum to zero" in caplog.text
    source.path.unlink()
    with pytest.raises(DomainError):
        source.reload("tester")
    assert source.router.catalog is before


async def test_sighup_reloads(source: CatalogSource) -> None:
    watcher = asyncio.create_task(source.on_sighup())
    await asyncio.sleep(0.05)
    source.path.write_text(BIGGER)
    os.kill(os.getpid(), signal.SIGHUP)
    for _ in range(100):
        if "b" in source.router.catalog.models:
            break
        await asyncio.sleep(0.02)
    assert "b" in source.router.catalog.models
    source.path.write_text(BAD)
    os.kill(os.getpid(), signal.SIGHUP)
    await asyncio.sleep(0.1)
    assert "b" in source.router.catalog.models and not watcher.done()  # refused, kept, still listening
    watcher.cancel()
    with pytest.raises(asyncio.CancelledError):
        await watcher


class _Context:
    def time_remaining(self) -> float | None:
        return None


async def test_a_native_caller_gets_its_own_keys_lists_never_its_requests() -> None:
    callers = Callers(Limiter(RouterSettings(), MemoryCounters()), 30)
    principal = keyvault_pb2.Principal(
        user_id="u-owner",
        key_id="k-1",
        scopes=["user"],
        team_id="t-1",
        team_pays=True,
        policy=keyvault_pb2.AccessPolicy(models=["a"]),
        team_policy=keyvault_pb2.AccessPolicy(models=["tier:BALANCED"]),
    )
    # The request claims a wider list and another team: ignored for a caller with its own key.
    request = router_pb2.CompletionRequest(
        caller=router_pb2.Caller(user_id="u-other", team_id="t-2", allowed_models=["*"], team_allowed_models=[])
    )
    token = identity.set_current(identity.Peer(service="", user=principal))
    try:
        caller, _ = await callers.admit(request, _Context())
    finally:
        identity.reset_current(token)
    assert (caller.user_id, caller.team_id, caller.team_pays) == ("u-owner", "t-1", True)
    assert (caller.allowed_models, caller.team_allowed_models) == (("a",), ("tier:BALANCED",))
    # The gateway's callers: what it says
    gateway_request = router_pb2.CompletionRequest(
        request_id="r1", caller=router_pb2.Caller(user_id="u2", allowed_models=["b"], team_allowed_models=["c"])
    )
    caller, _ = await callers.admit(gateway_request, _Context())
    assert (caller.allowed_models, caller.team_allowed_models) == (("b",), ("c",))
