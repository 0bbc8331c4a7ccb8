"""The whole suite as real processes (as `make run` starts it), probed from outside like an attacker would."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from services.launcher import Suite
from tests.e2e.support import start_suite


@pytest.fixture(scope="session")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    running = start_suite(tmp_path_factory.mktemp("security"))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def http(suite: Suite) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://{suite.host}:{suite.ports.gateway}", timeout=30) as session:
        yield session
