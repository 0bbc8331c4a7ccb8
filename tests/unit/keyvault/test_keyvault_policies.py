"""Access policies: stored as JSON and read back whole; a policy that cannot work is refused with its field."""

from __future__ import annotations

import pytest

from services.keyvault import policies
from services.runtime.errors import DomainError


def test_a_policy_round_trips_and_none_is_stored_empty() -> None:
    policy = policies.checked(["demo-small", "tier:eco", "demo-small"], 3, {"demo-small": (5, 0)}, "policy")
    assert policy.models == ("demo-small", "tier:eco")
    assert policies.loads(policy.dumps()) == policy
    assert policies.NONE.dumps() == "" and policies.loads("") == policies.NONE


@pytest.mark.parametrize(
    ("models", "parallel", "limits", "field"),
    [
        ([""], 0, {}, "policy.models"),
        (["has space"], 0, {}, "policy.models"),
        ([], -1, {}, "policy.max_parallel"),
        ([], 0, {"demo-small": (0, 0)}, "policy.model_limits"),
        ([], 0, {"demo-small": (-1, 5)}, "policy.model_limits"),
        ([], 0, {"tier:eco": (1, 1)}, "policy.model_limits"),
    ],
)
def test_a_policy_that_cannot_work_is_refused(
    models: list[str], parallel: int, limits: dict[str, tuple[int, int]], field: str
) -> None:
    with pytest.raises(DomainError) as err:
        policies.checked(models, parallel, limits, "policy")
    assert (err.value.code, err.value.param) == ("invalid_request", field)
