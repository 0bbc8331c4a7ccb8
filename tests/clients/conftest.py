"""Real client libraries through the whole suite (`make test-clients`, in .venv-clients).

They are not part of `make test`: without TOLLGATE_CLIENT_TESTS=1 (the target sets it) nothing here is
collected. One suite serves every client; the demo upstream's scripts play the provider's tool calls.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from services.launcher import Suite
from tests.e2e.support import start_suite

if os.environ.get("TOLLGATE_CLIENT_TESTS") != "1":
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    running = start_suite(tmp_path_factory.mktemp("clients"))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def key(suite: Suite) -> str:
    return suite.bootstrap_keys()["demo_key"]


@pytest.fixture(scope="session")
def base_url(suite: Suite) -> str:
    return suite.base_url


@pytest.fixture
def script(suite: Suite) -> Iterator[Any]:
    """`script(reply, ...)`: the next chat completions of `echo-paid` answer these (the demo upstream's format)."""
    control = f"http://{suite.host}:{suite.ports.upstream}/_control"

    def play(*replies: dict[str, Any]) -> None:
        httpx.post(control, json={"model": "demo-echo", "script": list(replies)}).raise_for_status()

    yield play
    httpx.post(control, json={"model": "demo-echo", "script": []}).raise_for_status()
