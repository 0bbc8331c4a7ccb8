"""Which of a model's deployments an attempt calls, in which order, and what this router learned of each.

`weighted` spreads requests by the catalog's weights (a weight of 0 serves only when the others cannot);
`least-busy` goes to the deployment with the fewest requests in flight in this router; `lowest-latency` to
the lowest moving average (EWMA) of the latency measured here, seeded with health's measurement of the
provider, a deployment never measured counting as fastest so that it gets measured. Ties keep the weighted
order. A deployment whose call failed cools down for `cooldown_seconds`: it is skipped while another
deployment of its model may serve, and tried last. A request's provider preferences (`preferences.py`)
leave deployments out and put the ones they name first.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable

from services.router.catalog import Deployment, Model
from services.router.health_view import HealthView
from services.router.preferences import Preferences

# Weight of the newest measurement in the moving average.
ALPHA = 0.3
_BY_SORT = {"latency": "lowest-latency", "throughput": "least-busy"}


class Deployments:
    """This router's view of every deployment: requests in flight, measured latency, cooldowns."""

    def __init__(
        self,
        health: HealthView | None = None,
        cooldown_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.cooldown_seconds = cooldown_seconds
        self._health = health
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()  # spreading load, not a secret
        self._in_flight: dict[tuple[str, str], int] = {}
        self._ewma: dict[tuple[str, str], float] = {}
        self._cooled_until: dict[tuple[str, str], float] = {}

    # what an attempt chooses

    def order(self, model: Model, prefs: Preferences | None = None) -> tuple[list[Model], list[Model]]:
        """(deployments to try in order, deployments cooling down), each bound to `model` (`Model.on`).

        The cooling ones are empty when every permitted deployment cools: then they are all tried in order.
        A deployment whose provider health reports down counts as cooling; one an admin holds down is left out.
        """
        health = self._health
        chosen = [
            d
            for d in model.deployments
            if (prefs is None or prefs.permits(d.provider.name))
            and (health is None or health.forced(d.provider.name) != "down")
        ]
        ordered = self._weighted(chosen)
        routing = _BY_SORT.get(prefs.sort, model.routing) if prefs is not None else model.routing
        if routing == "least-busy":
            ordered.sort(key=lambda d: self.in_flight(model.id, d))
        elif routing == "lowest-latency":
            ordered.sort(key=lambda d: self.latency(model.id, d))
        if prefs is not None and prefs.order:
            ordered.sort(key=lambda d: prefs.rank(d.provider.name))
        now = self._clock()
        warm = [
            d
            for d in ordered
            if self._cooled_until.get((model.id, d.id), 0.0) <= now
            and (health is None or health.state(d.provider.name) != "down")
        ]
        cooling = [d for d in ordered if d not in warm] if warm else []
        if not warm:
            warm = ordered
        return [model.on(d) for d in warm], [model.on(d) for d in cooling]

    def plan(
        self, models: Iterable[Model], prefs: Preferences | None, callable_here: Callable[[Model], bool]
    ) -> list[Model]:
        """The attempts of a request, in order: each candidate's deployments (its fallbacks come after every
        deployment of it), then the deployments that were cooling down, as a last resort."""
        first: list[Model] = []
        last: list[Model] = []
        for model in models:
            warm, cooling = self.order(model, prefs)
            first += [m for m in warm if callable_here(m)]
            last += [m for m in cooling if callable_here(m)]
        return first + last

    def _weighted(self, deployments: list[Deployment]) -> list[Deployment]:
        """A weighted draw without replacement: the first by weight, then the next among the rest, and so on."""
        pool = [d for d in deployments if d.weight > 0]
        drawn: list[Deployment] = []
        while pool:
            point = self._rng.random() * sum(d.weight for d in pool)
            for d in pool:
                point -= d.weight
                if point < 0:
                    break
            drawn.append(d)
            pool.remove(d)
        return drawn + [d for d in deployments if d.weight <= 0]

    # what this router measured

    def in_flight(self, model_id: str, deployment: Deployment) -> int:
        return self._in_flight.get((model_id, deployment.id), 0)

    def latency(self, model_id: str, deployment: Deployment) -> float:
        """The moving average of the latency measured here (ms); health's for its provider until then; 0 unknown."""
        found = self._ewma.get((model_id, deployment.id))
        if found is not None:
            return found
        return self._health.latency(deployment.provider.name) if self._health is not None else 0.0

    def cooling(self, model: Model) -> bool:
        return self._cooled_until.get(_key(model), 0.0) > self._clock()

    def started(self, model: Model) -> None:
        key = _key(model)
        self._in_flight[key] = self._in_flight.get(key, 0) + 1

    def ended(self, model: Model) -> None:
        key = _key(model)
        left = self._in_flight.get(key, 0) - 1
        if left > 0:
            self._in_flight[key] = left
        else:
            self._in_flight.pop(key, None)

    def answered(self, model: Model, latency_ms: float) -> None:
        key = _key(model)
        before = self._ewma.get(key)
        self._ewma[key] = latency_ms if before is None else ALPHA * latency_ms + (1 - ALPHA) * before
        self._cooled_until.pop(key, None)

    def failed(self, model: Model) -> None:
        """The deployment could not serve (unreachable, timed out, 429, 5xx): it cools down."""
        self._cooled_until[_key(model)] = self._clock() + self.cooldown_seconds


def _key(model: Model) -> tuple[str, str]:
    return (model.id, model.deployment_id)
