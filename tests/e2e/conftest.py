"""The whole suite as real processes on free ports, the demo upstream as the provider, the openai SDK as client."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from services.launcher import Suite
from tests.e2e.support import reconcile, start_suite

# Lines a test leaves for the end of the run (the fuzz's status mix), shown whatever the capture mode.
FUZZ_REPORT = pytest.StashKey[list[str]]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    for line in config.stash.get(FUZZ_REPORT, []):
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    running = start_suite(tmp_path_factory.mktemp("suite"))
    yield running
    running.stop()
    # After everything the e2e tests did to it, the ledger still adds up.
    report = reconcile(f"sqlite:///{running.data_dir / 'credits.db'}")
    assert report.returncode == 0, report.stdout + report.stderr


@pytest.fixture(scope="session")
def keys(suite: Suite) -> dict[str, str]:
    return suite.bootstrap_keys()


@pytest.fixture(scope="session")
def client(suite: Suite, keys: dict[str, str]) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=suite.base_url, api_key=keys["demo_key"], max_retries=0, timeout=30) as sdk:
        yield sdk


@pytest.fixture
def async_client(suite: Suite, keys: dict[str, str]) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=suite.base_url, api_key=keys["demo_key"], max_retries=0, timeout=30)


@pytest.fixture(scope="session")
def http(suite: Suite) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://{suite.host}:{suite.ports.gateway}", timeout=30) as session:
        yield session


@pytest.fixture(scope="session")
def upstream(suite: Suite) -> Iterator[httpx.Client]:
    """The fake provider's control plane (`/_control`, `/_stats`)."""
    with httpx.Client(base_url=f"http://{suite.host}:{suite.ports.upstream}", timeout=10) as session:
        yield session
