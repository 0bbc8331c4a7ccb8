"""Real agent CLIs against the suite as real processes: every test here is marked `agents`.

`make test` leaves them out (`-m "not agents"`); `make test-agents` installs the CLIs and runs them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.agents)
