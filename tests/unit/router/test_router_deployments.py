"""A model's deployments: the catalog format, the three strategies, cooldowns, and the pipeline's use of them."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import orjson
import pytest

from services.demo_upstream.server import Upstream
from services.router.catalog import Catalog, CatalogError, parse
from services.router.deployments import Deployments
from services.router.health_view import HealthView
from services.router.pipeline import Caller, Router, Settings
from services.router.preferences import Preferences
from services.router.request import parse as parse_request
from services.runtime.channels import Deadline
from services.runtime.errors import DomainError
from tollgate.health.v1 import health_pb2

from .conftest import FakeLedger, FakeVault

PROVIDERS = """
version: 1
providers:
  east: {api_base: "http://127.0.0.1:1/v1"}
  west: {api_base: "http://127.0.0.1:2/v1"}
  south: {api_base: "http://127.0.0.1:3/v1"}
  local: {api_base: "http://127.0.0.1:4/v1", free: true}
models:
"""

SPREAD = (
    PROVIDERS
    + """
  - id: spread
    tier: BALANCED
    price: {input: 0.01, output: 0.02}
    routing: ROUTING
    rpm: 60
    tpm: 6000
    deployments:
      - {provider: east, upstream: m-east, region: us-east, weight: 3}
      - {provider: west, upstream: m-west, region: us-west, weight: 1}
      - {provider: south, upstream: m-south, weight: 0}
  - {id: single, provider: east, upstream: one, tier: BALANCED, price: {input: 0.01, output: 0.02}}
"""
)


def catalog(routing: str = "weighted") -> Catalog:
    return parse(SPREAD.replace("ROUTING", routing), env={})


def refused(models: str) -> str:
    with pytest.raises(CatalogError) as err:
        parse(PROVIDERS + models, env={})
    return str(err.value)


# the catalog format


def test_deployments_load_and_a_single_provider_model_is_one_deployment() -> None:
    cat = catalog()
    spread = cat.models["spread"]
    assert [(d.id, d.provider.name, d.upstream, d.region, d.weight) for d in spread.deployments] == [
        ("east", "east", "m-east", "us-east", 3.0),
        ("west", "west", "m-west", "us-west", 1.0),
        ("south", "south", "m-south", "", 0.0),
    ]
    assert spread.provider.name == "east" and spread.upstream == "m-east"  # the first one stands for the model
    assert (spread.rpm, spread.tpm, spread.routing) == (60, 6000, "weighted")
    assert spread.providers == ("east", "west", "south")
    single = cat.models["single"]
    assert [(d.id, d.provider.name, d.upstream, d.weight) for d in single.deployments] == [("east", "east", "one", 1.0)]
    assert (single.rpm, single.tpm, single.routing) == (0, 0, "weighted")
    bound = spread.on(spread.deployments[1])
    assert (bound.provider.name, bound.upstream) == ("west", "m-west")
    assert (bound.deployment_id, bound.region) == ("west", "us-west")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            "{id: m, tier: BALANCED, price: {input: 1, output: 1}, deployments: [{provider: east, weight: 0}]}",
            "model m: deployments: weights sum to zero",
        ),
        (
            "{id: m, tier: BALANCED, price: {input: 1, output: 1}, deployments: [{provider: nowhere}]}",
            "model m: deployments[0]: unknown provider 'nowhere'",
        ),
        (
            "{id: m, tier: BALANCED, price: {input: 1, output: 1}, deployments: [{provider: east},"
            " {provider: west, weight: -1}]}",
            "model m: deployments[1]: weight must be a number >= 0",
        ),
        (
            "{id: m, tier: BALANCED, price: {input: 1, output: 1}, deployments: [{provider: east, weight: .nan}]}",
            "model m: deployments[0]: weight must be a number >= 0",
        ),
        (
            "{id: m, tier: BALANCED, price: {input: 1, output: 1}, deployments: [{provider: east, weight: yes}]}",
            "model m: deployments[0]: weight must be a number >= 0",
        ),
        (
            "{id: m, tier: BALANCED, price: {input: 1, output: 1}, deployments: [{provider: east},"
            " {provider: east, upstream: other}]}",
            "model m: deployments[1]: id 'east' is already used",
        ),
        (
            "{id: m, tier: BALANCED, price: {input: 1, output: 1}, deployments: [{provider: east, api_base: x}]}",
            "model m: deployments[0]: unknown key api_base",
        ),
        (
            "{id: m, provider: east, tier: BALANCED, price: {input: 1, output: 1}, deployments: [{provider: east}]}",
            "model m: provider and deployments exclude each other",
        ),
        ("{id: m, tier: BALANCED, price: {input: 1, output: 1}, deployments: []}", "model m: deployments must be a"),
        ("{id: m, tier: BALANCED, price: {input: 1, output: 1}, deployments: [{}]}", "deployments[0]: must name"),
        (
            "{id: m, tier: BALANCED, price: {input: 1, output: 1}, deployments: [{provider: [east]}]}",
            "deployments[0]: unknown provider",
        ),
        (
            "{id: m, tier: BALANCED, price: {input: 1, output: 1}, routing: fastest, deployments: [{provider: east}]}",
            "model m: routing 'fastest' is not one of weighted, least-busy, lowest-latency",
        ),
        ("{id: m, provider: east, tier: BALANCED, price: {input: 1, output: 1}, rpm: -1}", "model m: rpm: must be"),
        ("{id: m, provider: east, tier: BALANCED, price: {input: 1, output: 1}, tpm: 1.5}", "model m: tpm: must be"),
        # a deployment on a paid provider needs a price, even when the first one is free
        (
            "{id: m, tier: BALANCED, deployments: [{provider: local}, {provider: east}]}",
            "model m: price is required (provider east is paid)",
        ),
    ],
)
def test_bad_deployments_are_refused_naming_the_entry(entry: str, message: str) -> None:
    assert message in refused(f"  - {entry}\n")


# strategies


def picks(table: Deployments, model_id: str, cat: Catalog, n: int, prefs: Preferences | None = None) -> Counter[str]:
    model = cat.models[model_id]
    return Counter(table.order(model, prefs)[0][0].deployment_id for _ in range(n))


def test_weighted_spreads_by_weight_within_tolerance() -> None:
    cat = catalog()
    table = Deployments(rng=random.Random(7))
    seen = picks(table, "spread", cat, 4000)
    assert seen["south"] == 0  # weight 0: only when the others cannot serve
    assert 0.72 <= seen["east"] / 4000 <= 0.78  # 3:1
    assert 0.22 <= seen["west"] / 4000 <= 0.28
    # every deployment is in the order, the weight-0 one last, so an attempt falls back to it
    warm, cooling = table.order(cat.models["spread"])
    assert {m.deployment_id for m in warm} == {"east", "west", "south"} and warm[-1].deployment_id == "south"
    assert cooling == []


def test_least_busy_goes_to_the_fewest_in_flight() -> None:
    cat = catalog("least-busy")
    table = Deployments(rng=random.Random(1))
    model = cat.models["spread"]
    east, west, south = (model.on(d) for d in model.deployments)
    for _ in range(3):
        table.started(east)
    table.started(west)
    assert [m.deployment_id for m in table.order(model)[0]] == ["south", "west", "east"]
    table.started(south)
    table.started(south)
    assert table.order(model)[0][0].deployment_id == "west"
    for _ in range(3):
        table.ended(east)
    assert table.order(model)[0][0].deployment_id == "east"
    assert table.in_flight("spread", model.deployments[0]) == 0


def test_lowest_latency_follows_the_measured_average_seeded_from_health() -> None:
    cat = catalog("lowest-latency")
    health = HealthView()
    health.apply(
        health_pb2.ProviderEvent(
            snapshot=True,
            providers=[
                health_pb2.ProviderState(provider="east", state=health_pb2.STATE_HEALTHY, latency_ewma_ms=300),
                health_pb2.ProviderState(provider="west", state=health_pb2.STATE_HEALTHY, latency_ewma_ms=100),
                health_pb2.ProviderState(provider="south", state=health_pb2.STATE_HEALTHY, latency_ewma_ms=200),
            ],
        )
    )
    table = Deployments(health, rng=random.Random(3))
    model = cat.models["spread"]
    east, west, _ = (model.on(d) for d in model.deployments)
    assert [m.deployment_id for m in table.order(model)[0]] == ["west", "south", "east"]  # health's view
    for _ in range(5):
        table.answered(west, 500)  # measured here: west got slow
        table.answered(east, 20)
    assert [m.deployment_id for m in table.order(model)[0]] == ["east", "south", "west"]
    assert table.latency("spread", model.deployments[0]) < 100 < table.latency("spread", model.deployments[1])
    # a sort asked for by the request overrides the model's routing
    assert picks(table, "spread", cat, 200, Preferences(sort="throughput"))["east"] < 200


def test_a_failed_deployment_cools_down_while_others_serve_then_returns() -> None:
    now = [1000.0]
    cat = catalog()
    table = Deployments(cooldown_seconds=10, clock=lambda: now[0], rng=random.Random(5))
    model = cat.models["spread"]
    east = model.on(model.deployments[0])
    table.failed(east)
    assert table.cooling(east)
    warm, cooling = table.order(model)
    assert [m.deployment_id for m in cooling] == ["east"]
    assert "east" not in {m.deployment_id for m in warm}
    assert picks(table, "spread", cat, 300)["east"] == 0
    now[0] += 10.5
    assert not table.cooling(east) and picks(table, "spread", cat, 300)["east"] > 150
    # every deployment cooling: all are tried, in order, rather than none
    for d in model.deployments:
        table.failed(model.on(d))
    warm, cooling = table.order(model)
    assert len(warm) == 3 and cooling == []
    # an answer ends a cooldown at once
    table.answered(east, 5)
    assert not table.cooling(east)


def test_provider_preferences_narrow_and_order_deployments() -> None:
    cat = catalog()
    table = Deployments(rng=random.Random(11))
    model = cat.models["spread"]
    only = Preferences(only=("west", "south"))
    assert {m.deployment_id for m in table.order(model, only)[0]} == {"west", "south"}
    ignore = Preferences(ignore=("east",))
    assert picks(table, "spread", cat, 100, ignore) == Counter({"west": 100})
    ordered = Preferences(order=("south", "west"))
    assert [m.deployment_id for m in table.order(model, ordered)[0]] == ["south", "west", "east"]


# the pipeline


DEPLOYED = """
version: 1
providers:
  a: {{api_base: {base}, adapter: openai, timeout_s: 5}}
  b: {{api_base: {base}, adapter: openai, timeout_s: 5}}
  c: {{api_base: {base}, adapter: openai, timeout_s: 5}}
models:
  - id: twin
    tier: BALANCED
    price: {{input: 0.01, output: 0.02}}
    fallbacks: [spare]
    deployments:
      - {{id: broken, provider: a, upstream: fail-500, region: eu, weight: 1000}}
      - {{id: working, provider: b, upstream: demo-echo, region: us, weight: 1}}
  - {{id: spare, provider: c, upstream: demo-echo, tier: BALANCED, price: {{input: 0.01, output: 0.02}}}}
"""


@pytest.fixture
async def deployed(upstream: Upstream) -> AsyncIterator[Router]:
    cat = parse(DEPLOYED.format(base=upstream.base_url))
    r = Router(cat, Settings(default_power_level="BALANCED"), FakeLedger(), FakeVault(), HealthView())
    r.deployments = Deployments(r.health, cooldown_seconds=60, rng=random.Random(2))
    yield r
    await r.close()


def caller() -> Caller:
    return Caller(request_id=uuid.uuid4().hex, user_id="u1", key_id="k1", deadline=Deadline(10))


CHAT = {"model": "twin", "messages": [{"role": "user", "content": "hi"}]}


async def test_another_deployment_answers_before_the_declared_fallback_and_the_failed_one_cools(
    deployed: Router,
) -> None:
    body, outcome = await deployed.complete(parse_request("chat", orjson.dumps(CHAT)), caller())
    assert (outcome.model, outcome.deployment_id, outcome.region, outcome.provider) == ("twin", "working", "us", "b")
    assert outcome.deployment == "demo-echo"
    meta = orjson.loads(body)["_metadata"]
    assert (meta["deployment"], meta["region"], meta["model_used"]) == ("working", "us", "twin")
    usage = orjson.loads(deployed.ledger.usage[-1].decision)  # type: ignore[attr-defined]
    assert [(a["deployment"], a["result"]) for a in usage["attempts"]] == [("broken", "error"), ("working", "ok")]
    assert usage["deployment"] == {"id": "working", "region": "us", "upstream": "demo-echo"}
    # the broken deployment cools: the next requests go straight to the working one despite its weight
    for _ in range(5):
        _, outcome = await deployed.complete(parse_request("chat", orjson.dumps(CHAT)), caller())
        assert outcome.deployment_id == "working" and outcome.fallbacks == 0
    assert all(n == 0 for n in deployed.deployments._in_flight.values())


async def test_a_request_keeps_the_catalog_it_started_with(deployed: Router, upstream: Upstream) -> None:
    old = deployed.catalog
    renamed = parse(DEPLOYED.format(base=upstream.base_url).replace("id: spare", "id: spare2").replace("[spare]", "[]"))
    trace = deployed._trace(parse_request("chat", orjson.dumps(CHAT)), caller())
    deployed.reload(renamed)
    assert trace.catalog is old and deployed.catalog is renamed
    assert "spare2" in deployed.decide(parse_request("chat", orjson.dumps({**CHAT, "model": "spare2"}))).requested  # type: ignore[operator]


SLOW = """
version: 1
providers:
  a: {{api_base: {base}, adapter: openai, timeout_s: 5, free: true}}
  b: {{api_base: {base}, adapter: openai, timeout_s: 5, free: true}}
models:
  - id: twin
    tier: FREE
    deployments:
      - {{id: slow, provider: a, upstream: slow-400, weight: 1}}
      - {{id: other, provider: b, upstream: slow-400, weight: 0}}
"""


async def test_a_callers_own_short_deadline_never_cools_a_deployment(upstream: Upstream) -> None:
    router = Router(
        parse(SLOW.format(base=upstream.base_url)),
        Settings(default_power_level="BALANCED"),
        FakeLedger(),
        FakeVault(),
        HealthView(),
    )
    try:
        impatient = Caller(request_id=uuid.uuid4().hex, user_id="u1", key_id="k1", deadline=Deadline(0.15))
        with pytest.raises(DomainError) as err:
            await router.complete(parse_request("chat", orjson.dumps({**CHAT, "model": "twin"})), impatient)
        assert err.value.code == "timeout"
        model = router.catalog.models["twin"]
        assert not router.deployments.cooling(model.on(model.deployments[0]))
        assert all(n == 0 for n in router.deployments._in_flight.values())
    finally:
        await router.close()


def test_a_model_with_one_paid_deployment_is_not_free_until_bound_to_a_free_one() -> None:
    cat = parse(
        PROVIDERS + "  - {id: mixed, tier: BALANCED, price: {input: 0.01, output: 0.02},"
        " deployments: [{provider: local}, {provider: east}]}\n",
        env={},
    )
    mixed = cat.models["mixed"]
    assert not mixed.free  # a hold made for it covers the paid deployment
    local, east = (mixed.on(d) for d in mixed.deployments)
    assert local.free and not east.free
    assert local.places == (local.provider,) and local.providers == ("local",)
