"""Attack-style tests against the suite as real processes: what they share.

`suite` is the whole suite as `make run` starts it, probed from outside as an attacker would.
`edge` is one suite for the session with short edge deadlines (so trickling clients are cut fast), a
metrics port of its own, slow stream chunks (so a client can leave mid-stream), a small response cache,
and the `leaky` provider: an upstream in this process whose every answer is an error quoting the key it
was sent. `start_redis` gives a test a Redis of its own to stop, pause and kill.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from services.launcher import Suite, free_port
from tests.e2e.support import start_suite

CATALOG = Path(__file__).with_name("catalog.yaml")
HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
CHUNK_GAP_MS = 150
CACHE_ENTRIES = 5
MAX_CONNECTIONS = 40
# A platform key of no recognisable shape (plain hex), so only its registration by value can mask it.
LEAKY_KEY = uuid.uuid4().hex + uuid.uuid4().hex


class _Leaky(BaseHTTPRequestHandler):
    """An upstream that refuses every call and quotes the credential, as careless providers do."""

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        sent = self.headers.get("authorization", "")
        key = sent.removeprefix("Bearer ")
        message = f"Invalid credential {key!r} (header was {sent!r}); see https://x.test/keys?key={key}"
        body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "code": key}}).encode()
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Edge:
    suite: Suite
    logs: Path
    metrics_port: int

    @property
    def url(self) -> str:
        return f"http://{self.suite.host}:{self.suite.ports.gateway}"

    @property
    def upstream(self) -> str:
        return f"http://{self.suite.host}:{self.suite.ports.upstream}"


@pytest.fixture(scope="session")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    leaky = ThreadingHTTPServer(("127.0.0.1", 0), _Leaky)
    threading.Thread(target=leaky.serve_forever, daemon=True).start()
    tmp = Path(tmp_path_factory.mktemp("security"))
    metrics_port = free_port()
    suite = start_suite(
        tmp,
        upstream_args=("--chunk-gap-ms", str(CHUNK_GAP_MS)),
        TOLLGATE_CATALOG=str(CATALOG),
        TOLLGATE_LOG_LEVEL="DEBUG",
        TOLLGATE_HEADER_TIMEOUT=str(HEADER_TIMEOUT),
        TOLLGATE_BODY_TIMEOUT=str(BODY_TIMEOUT),
        TOLLGATE_GATEWAY_METRICS_PORT=str(metrics_port),
        TOLLGATE_CACHE_MAX_ENTRIES=str(CACHE_ENTRIES),
        TOLLGATE_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
        TOLLGATE_SECURITY_LEAKY_URL=f"http://127.0.0.1:{leaky.server_address[1]}/v1",
        TOLLGATE_SECURITY_LEAKY_KEY=LEAKY_KEY,
    )
    try:
        yield Edge(suite, tmp / "logs", metrics_port)
    finally:
        suite.stop()
        leaky.shutdown()
        leaky.server_close()


@pytest.fixture(scope="session")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    running = start_suite(tmp_path_factory.mktemp("suite"))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def keys(edge: Edge) -> dict[str, str]:
    return edge.suite.bootstrap_keys()


@pytest.fixture(scope="session")
def http(edge: Edge) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=edge.url, timeout=30) as client:
        yield client


@dataclass
class Redis:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        self.resume()
        self.process.kill()
        self.process.wait()


def start_redis(folder: Path) -> Redis:
    """A Redis of the test's own on a free port, so that stopping it touches nothing else."""
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed; it is needed to test Redis faults")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen([*args, "--dir", str(folder)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis(port=port).ping()
            return Redis(process, port)
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.05)
