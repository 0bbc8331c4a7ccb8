"""With the default settings no proxy is trusted: a client cannot pick the address its failures count under."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.launcher import Suite
from tests.e2e.support import start_suite


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    running = start_suite(Path(tmp_path_factory.mktemp("forwarded")), TOLLGATE_FORWARDED_ALLOW_IPS="")
    yield running
    running.stop()


def test_a_forged_x_forwarded_for_does_not_buy_more_key_guesses(plain: Suite) -> None:
    limit = 20  # TOLLGATE_AUTH_FAILURE_LIMIT's default
    with httpx.Client(base_url=f"http://{plain.host}:{plain.ports.gateway}", timeout=10) as http:
        statuses = [
            http.get(
                "/v1/models",
                headers={"Authorization": f"Bearer tg-guess-{uuid.uuid4().hex}", "X-Forwarded-For": f"203.0.113.{n}"},
            ).status_code
            for n in range(limit + 1)
        ]
    assert statuses[:limit] == [401] * limit
    assert statuses[limit] == 429
