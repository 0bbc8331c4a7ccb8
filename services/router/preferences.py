"""A request's provider preferences (`provider: {order, only, ignore, sort}`, as OpenRouter takes them).

They only narrow and reorder what the catalog and the caller's allow-lists already permit: `only` and
`ignore` leave out deployments (and so models with none left), `order` tries the named providers' deployments
first, `sort` orders the rest by `price` (automatic choices), `latency` (measured) or `throughput` (fewest
requests in flight, then latency). Every name must be a catalog provider; the field is consumed here and never
travels to a provider, so a client can never steer a call anywhere the catalog does not name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from services.router.catalog import Catalog
from services.runtime.errors import DomainError

SORTS = ("price", "latency", "throughput")
_LISTS = ("order", "only", "ignore")


@dataclass(frozen=True, slots=True)
class Preferences:
    order: tuple[str, ...] = ()
    only: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    sort: str = ""

    def permits(self, provider: str) -> bool:
        return (not self.only or provider in self.only) and provider not in self.ignore

    def rank(self, provider: str) -> int:
        """Where `provider` stands in `order` (len(order) when not named)."""
        return self.order.index(provider) if provider in self.order else len(self.order)

    def check(self, catalog: Catalog) -> None:
        """Refuse a provider the catalog does not name (400, naming the field)."""
        for name in _LISTS:
            for index, provider in enumerate(getattr(self, name)):
                if provider not in catalog.providers:
                    raise _invalid(f"provider.{name}[{index}]: {provider!r} is not a provider of this gateway", name)


def parse(value: object) -> Preferences | None:
    """The body's `provider` object, its shape checked; None when absent."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _invalid("provider must be an object with order, only, ignore and sort", "")
    unknown = sorted(str(k) for k in value if k not in (*_LISTS, "sort"))
    if unknown:
        raise _invalid(f"provider.{unknown[0]} is not supported: send order, only, ignore or sort", unknown[0])
    lists = {name: _names(value.get(name), name) for name in _LISTS}
    sort = value.get("sort")
    if sort is not None and sort not in SORTS:
        raise _invalid(f"provider.sort must be one of {', '.join(SORTS)}", "sort")
    prefs = Preferences(lists["order"], lists["only"], lists["ignore"], sort or "")
    if prefs.only and all(p in prefs.ignore for p in prefs.only):
        raise _invalid("provider.ignore leaves out every provider in provider.only", "ignore")
    return prefs


def _names(value: object, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _invalid(f"provider.{name} must be a list of provider names", name)
    return tuple(dict.fromkeys(value))


def _invalid(message: str, field: str) -> DomainError:
    return DomainError("invalid_request", message, f"provider.{field}" if field else "provider")


def any_permitted(prefs: Preferences | None, providers: Iterable[str]) -> bool:
    return prefs is None or any(prefs.permits(p) for p in providers)
