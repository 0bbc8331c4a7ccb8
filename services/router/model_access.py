"""Which models a caller may be answered by: its key's and its team's allow-lists.

An entry names a catalog id, an alias, or a whole tier (`tier:<name>`); an empty list allows every model, and
both lists apply (a model must pass each non-empty one). A model the request names outside them is refused
(403 `model_not_allowed`, naming it); an automatic choice, a declared fallback or a power level's ranking
never picks one. Entries naming nothing in the current catalog match nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.router.catalog import Model
from services.runtime.errors import DomainError

TIER_PREFIX = "tier:"


@dataclass(frozen=True, slots=True)
class ModelAccess:
    key: tuple[str, ...] = ()
    team: tuple[str, ...] = ()

    @classmethod
    def of(cls, key: Sequence[str], team: Sequence[str]) -> ModelAccess:
        return cls(tuple(n for n in key if n), tuple(n for n in team if n))

    @property
    def unrestricted(self) -> bool:
        return not self.key and not self.team

    def allows(self, model: Model) -> bool:
        return _listed(model, self.key) and _listed(model, self.team)

    def require(self, name: str, model: Model) -> None:
        """Refuse a named model outside the lists, naming it as the client did."""
        if self.allows(model):
            return
        whose = "this key" if not _listed(model, self.key) else "this key's team"
        raise DomainError(
            "model_not_allowed",
            f"The model `{name}` is not allowed for {whose}; ask an admin, or name a model it may use",
            "model",
        )


def _listed(model: Model, names: tuple[str, ...]) -> bool:
    if not names:
        return True
    own = {model.id, *model.aliases}
    for name in names:
        if name in own:
            return True
        if name[: len(TIER_PREFIX)].lower() == TIER_PREFIX and name[len(TIER_PREFIX) :].upper() == model.tier:
            return True
    return False
