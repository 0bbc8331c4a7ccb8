"""Router unit fixtures: a catalog over the demo upstream, an in-memory ledger and vault."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from services.demo_upstream.server import Upstream, start_upstream
from services.router.catalog import Catalog, parse
from services.router.clients import SELF, Funds, Hold, Payer
from services.router.health_view import HealthView
from services.router.pipeline import Router, Settings
from services.runtime.errors import DomainError
from tollgate.credits.v1 import credits_pb2

PIPELINE_CATALOG = """
version: 1
providers:
  up:
    api_base: {base}
    adapter: openai
    timeout_s: 5
    connect_timeout_s: 1
    byok: true
  backup:
    api_base: {base}
    adapter: openai
    timeout_s: 5
  slowpoke:
    api_base: {base}
    adapter: openai
    timeout_s: 0.3
  free:
    api_base: {base}
    adapter: openai
    free: true
  keyed:
    api_base: {base}
    adapter: openai
    api_key_env: TOLLGATE_TEST_KEYED_KEY
    byok: true
models:
  - {{id: echo, provider: up, upstream: demo-echo, tier: BALANCED, price: {{input: 0.01, output: 0.02}},
     capabilities: [chat, completion, tools, json], quality: 60}}
  - {{id: spare, provider: backup, upstream: demo-echo, tier: BALANCED, price: {{input: 0.02, output: 0.04}},
     capabilities: [chat, completion], quality: 50}}
  - {{id: broken-500, provider: up, upstream: fail-500, tier: BALANCED, price: {{input: 0.01, output: 0.02}},
     capabilities: [chat, completion], fallbacks: [spare]}}
  - {{id: broken-429, provider: up, upstream: fail-429, tier: BALANCED, price: {{input: 0.01, output: 0.02}},
     capabilities: [chat], fallbacks: [spare]}}
  - {{id: broken-400, provider: up, upstream: fail-400, tier: BALANCED, price: {{input: 0.01, output: 0.02}},
     capabilities: [chat], fallbacks: [spare]}}
  - {{id: garbled, provider: up, upstream: garbage, tier: BALANCED, price: {{input: 0.01, output: 0.02}},
     capabilities: [chat], fallbacks: [spare]}}
  - {{id: stuck, provider: slowpoke, upstream: hang, tier: BALANCED, price: {{input: 0.01, output: 0.02}},
     capabilities: [chat], fallbacks: [spare]}}
  - {{id: cut, provider: up, upstream: cut-after-3, tier: BALANCED, price: {{input: 0.01, output: 0.02}},
     capabilities: [chat], fallbacks: [spare]}}
  - {{id: quiet, provider: up, upstream: no-usage, tier: BALANCED, price: {{input: 0.01, output: 0.02}},
     capabilities: [chat, completion]}}
  - {{id: gratis, provider: free, upstream: demo-echo, tier: FREE, capabilities: [chat, completion], quality: 30}}
  - {{id: vectors, provider: up, upstream: demo-embed, tier: SPECIALIZED, price: {{input: 0.0001, output: 0}},
     capabilities: [embeddings]}}
  - {{id: locked, provider: keyed, upstream: demo-echo, tier: BALANCED, price: {{input: 0.01, output: 0.02}},
     capabilities: [chat]}}
  - {{id: unreachable, provider: dead, upstream: demo-echo, tier: BALANCED, price: {{input: 0.01, output: 0.02}},
     capabilities: [chat], fallbacks: [spare]}}
"""


@dataclass
class FakeLedger:
    """The ledger's calls as a list; reserve refuses beyond `available`."""

    available: int = 1_000_000_000
    calls: list[tuple[str, str, int]] = field(default_factory=list)
    usage: list[credits_pb2.UsageRecord] = field(default_factory=list)
    holds: dict[str, int] = field(default_factory=dict)
    payers: list[Payer] = field(default_factory=list)
    batches: list[int] = field(default_factory=list)  # the size of each settle_many call
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    async def reserve(
        self,
        user_id: str,
        amount_micro: int,
        key: str,
        request_id: str,
        ttl_seconds: int,
        timeout: float,
        payer: Payer = SELF,
    ) -> Hold:
        if amount_micro > self.available:
            raise DomainError("insufficient_credits", "not enough credits")
        hold_id = f"h{next(self._ids)}"
        self.holds[hold_id] = amount_micro
        self.payers.append(payer)
        self.calls.append(("reserve", key, amount_micro))
        return Hold(hold_id, Funds(self.available - amount_micro, False), amount_micro)

    async def settle(
        self, hold_id: str, amount_micro: int, key: str, usage: credits_pb2.UsageRecord, timeout: float
    ) -> Funds:
        self.holds.pop(hold_id)
        self.available -= amount_micro
        self.calls.append(("settle", key, amount_micro))
        self.usage.append(usage)
        return Funds(self.available, False)

    async def settle_many(self, settles: list[credits_pb2.SettleRequest], timeout: float) -> list[Funds | DomainError]:
        """As credits' SettleBatch: each settle on its own, its error in its place."""
        self.batches.append(len(settles))
        results: list[Funds | DomainError] = []
        for s in settles:
            try:
                results.append(await self.settle(s.hold_id, s.amount_micro, s.idempotency_key, s.usage, timeout))
            except DomainError as err:
                results.append(err)
        return results

    async def release(self, hold_id: str, key: str, usage: credits_pb2.UsageRecord | None, timeout: float) -> None:
        self.holds.pop(hold_id)
        self.calls.append(("release", key, 0))
        if usage is not None:
            self.usage.append(usage)

    async def record_usage(self, usage: credits_pb2.UsageRecord, key: str, timeout: float) -> None:
        self.calls.append(("usage", key, usage.cost_micro))
        self.usage.append(usage)

    async def funds(self, user_id: str, timeout: float) -> Funds:
        return Funds(self.available, False)

    def kinds(self) -> list[str]:
        return [c[0] for c in self.calls]

    def charged(self) -> list[int]:
        return [c[2] for c in self.calls if c[0] == "settle"]


@dataclass
class FakeVault:
    keys: dict[tuple[str, str], str] = field(default_factory=dict)

    async def provider_key(self, user_id: str, provider: str, timeout: float) -> str | None:
        return self.keys.get((user_id, provider))


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = await start_upstream(chunks=6)
    yield server
    await server.close()


@pytest.fixture
def pipeline_catalog(upstream: Upstream) -> Catalog:
    text = PIPELINE_CATALOG.format(base=upstream.base_url)
    dead = "  dead:\n    api_base: http://127.0.0.1:9/v1\n    adapter: openai\n"
    return parse(text.replace("providers:\n", "providers:\n" + dead, 1))


@pytest.fixture
async def router(pipeline_catalog: Catalog) -> AsyncIterator[Router]:
    r = Router(pipeline_catalog, Settings(default_power_level="BALANCED"), FakeLedger(), FakeVault(), HealthView())
    yield r
    await r.close()
