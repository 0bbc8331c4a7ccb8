"""Access policies of keys and teams: which models, how many requests in flight, per-model RPM/TPM.

A policy is stored as JSON beside its key or team ("" for none) and checked whole before it is written: a
policy that cannot work (an empty model name, a negative limit) is refused with the field named. Whether a
named model exists is the gateway's check (it has the catalog); keyvault stores names as given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from services.runtime.errors import DomainError

MAX_MODELS = 200
MAX_PARALLEL = 100_000
_LIMIT = 2**31 - 1
_MODEL = re.compile(r"^[A-Za-z0-9_.:/@+\-]{1,200}$")


@dataclass(frozen=True)
class Policy:
    models: tuple[str, ...] = ()
    max_parallel: int = 0
    model_limits: dict[str, tuple[int, int]] = field(default_factory=dict)  # model -> (rpm, tpm)

    def empty(self) -> bool:
        return not self.models and not self.max_parallel and not self.model_limits

    def dumps(self) -> str:
        if self.empty():
            return ""
        return orjson.dumps(
            {"models": list(self.models), "max_parallel": self.max_parallel, "model_limits": self.model_limits}
        ).decode()


NONE = Policy()


def loads(text: str | None) -> Policy:
    if not text:
        return NONE
    data: dict[str, Any] = orjson.loads(text)
    limits = {str(k): (int(v[0]), int(v[1])) for k, v in data.get("model_limits", {}).items()}
    return Policy(tuple(data.get("models", ())), int(data.get("max_parallel", 0)), limits)


def checked(models: list[str], max_parallel: int, model_limits: dict[str, tuple[int, int]], param: str) -> Policy:
    """A policy from its parts, refused with `<param>.<field>` named when a part cannot work."""
    names = tuple(dict.fromkeys(m.strip() for m in models))
    if len(names) > MAX_MODELS:
        raise DomainError("invalid_request", f"a policy names at most {MAX_MODELS} models", f"{param}.models")
    for name in names:
        if not _MODEL.match(name) or name in ("tier:",):
            raise DomainError(
                "invalid_request", f"model {name!r} is not a catalog id, alias or 'tier:<name>'", f"{param}.models"
            )
    if not 0 <= max_parallel <= MAX_PARALLEL:
        raise DomainError("invalid_request", f"max_parallel must be from 0 to {MAX_PARALLEL}", f"{param}.max_parallel")
    if len(model_limits) > MAX_MODELS:
        raise DomainError("invalid_request", f"at most {MAX_MODELS} model limits", f"{param}.model_limits")
    for name, (rpm, tpm) in model_limits.items():
        if not _MODEL.match(name) or name.startswith("tier:"):
            raise DomainError("invalid_request", f"model {name!r} is not a catalog id", f"{param}.model_limits")
        if not (0 <= rpm <= _LIMIT and 0 <= tpm <= _LIMIT) or (rpm == 0 and tpm == 0):
            raise DomainError(
                "invalid_request",
                f"the limit of {name!r} needs rpm and/or tpm from 1 to {_LIMIT} (0: no limit), not both 0",
                f"{param}.model_limits",
            )
    return Policy(names, max_parallel, dict(model_limits))
