"""Page cursors from internal callers: only what a previous page returned, never an INTERNAL error."""

from __future__ import annotations

import pytest

from services.credits.servicer import cursor
from services.runtime.errors import DomainError


def test_a_cursor_is_a_row_id() -> None:
    assert cursor("", "before") is None
    assert cursor("42", "before") == 42


@pytest.mark.parametrize("value", ["³", "٣", "-1", "1e3", "9" * 40, " 1"])
def test_anything_else_is_invalid_naming_the_parameter(value: str) -> None:
    with pytest.raises(DomainError) as refused:
        cursor(value, "before")
    assert (refused.value.code, refused.value.param) == ("invalid_request", "before")
