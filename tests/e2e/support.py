"""What the end-to-end tests share: starting the suite, the canaries, the price rule."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from services.launcher import Ports, Suite
from services.runtime.identity import SignedChannel, Signer

CATALOG = Path(__file__).with_name("catalog.yaml")
# Canaries: planted at start-up; they must never appear anywhere but in their masked form.
PLATFORM_KEY = "sk-e2e-platform-canary-7f3a9c2e41b8d6f0"


def start_suite(tmp: Path, upstream_args: tuple[str, ...] = (), **env: str) -> Suite:
    suite = Suite(
        data_dir=tmp / "data",
        ports=Ports.free(),
        log_dir=tmp / "logs",
        upstream_args=upstream_args,
        env={
            "TOLLGATE_CATALOG": str(CATALOG),
            "TOLLGATE_E2E_PLATFORM_KEY": PLATFORM_KEY,
            "TOLLGATE_LOG_LEVEL": "INFO",
            "TOLLGATE_AUTH_CACHE_TTL": "1",
            # The tests play clients behind a proxy on 127.0.0.1, each with its own X-Forwarded-For.
            "TOLLGATE_FORWARDED_ALLOW_IPS": "127.0.0.1",
            **env,
        },
    )
    suite.start()
    return suite


def production_suite_env(tmp: Path, prefix: str) -> dict[str, str]:
    """The production profile's settings on fresh `<prefix>_*` databases of the test PostgreSQL and a Redis prefix
    of its own, with the e2e catalog and its platform key."""
    import pytest

    from services.launcher import production_env
    from tests.conftest import POSTGRES_URL, REDIS_URL

    try:
        env = production_env(tmp / "data", POSTGRES_URL, REDIS_URL, prefix=prefix)
    except OSError as exc:
        pytest.fail(f"PostgreSQL is needed for the production profile: {exc}")
    return env | {
        "TOLLGATE_CATALOG": str(CATALOG),
        "TOLLGATE_E2E_PLATFORM_KEY": PLATFORM_KEY,
        "TOLLGATE_REDIS_PREFIX": f"{prefix}:",
    }


def drop_suite_databases(prefix: str) -> None:
    """Drop the databases `production_suite_env` made for `prefix`."""
    import asyncio

    import asyncpg

    from tests.conftest import POSTGRES_URL

    async def drop() -> None:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
        try:
            for svc in ("credits", "keyvault", "health"):
                await conn.execute(f'DROP DATABASE IF EXISTS "{prefix}_{svc}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


def eventually(check: Callable[[], bool], what: str, timeout: float = 15) -> None:
    """Wait until `check()` holds, or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.05)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def balance_micro(http: httpx.Client, key: str, wait: float = 10.0) -> int:
    """The key's user's balance once nothing is held: the router settles an answer just after sending it."""
    deadline = time.monotonic() + wait
    while True:
        reply = http.get("/v1/credits", headers=bearer(key))
        assert reply.status_code == 200, reply.text
        found = reply.json()
        if found["reserved_micro"] == 0 or time.monotonic() > deadline:
            return int(found["balance_micro"])
        time.sleep(0.02)


def settled(http: httpx.Client, key: str, wait: float = 10.0) -> None:
    """Wait until the key's user holds nothing and has no pending usage row: every answer's settle landed."""

    def idle() -> bool:
        held = http.get("/v1/credits", headers=bearer(key)).json()["reserved_micro"]
        rows = http.get("/v1/usage", headers=bearer(key)).json()["data"]
        return bool(held == 0 and all(r["status"] != "pending" for r in rows))

    eventually(idle, "every settle landed", wait)


def words(text: str) -> int:
    return len(text.split())


def cost_micro(prompt_tokens: int, completion_tokens: int, input_per_1k: float, output_per_1k: float) -> int:
    """The catalog price rule: integer micro-credits, rounded up per request."""
    inp, out = round(input_per_1k * 1_000_000), round(output_per_1k * 1_000_000)
    return -(-(prompt_tokens * inp + completion_tokens * out) // 1000)


def signer(suite: Suite, name: str = "operator") -> Signer:
    """The identity of one of the suite's callers (gateway, router, operator), to sign raw gRPC calls with."""
    return Signer(name, suite.identity_key(name))


def grpc_channel(suite: Suite, service: str, name: str | None = "operator") -> Any:
    """A blocking channel to one of the suite's gRPC services, signed as `name` (None: a plain channel)."""
    import grpc

    raw = grpc.insecure_channel(f"{suite.host}:{getattr(suite.ports, service)}")
    return SignedChannel(raw, signer(suite, name)) if name else raw


def create_key(suite: Suite, user: str, rpm: int = 0, tpm: int = 0, scopes: tuple[str, ...] = ("user",)) -> str:
    """A new API key, made over keyvault's gRPC API as the operator's CLI would."""
    from tollgate.keyvault.v1 import keyvault_pb2, keyvault_pb2_grpc

    with grpc_channel(suite, "keyvault") as chan:
        reply = keyvault_pb2_grpc.KeyVaultStub(chan).CreateApiKey(
            keyvault_pb2.CreateApiKeyRequest(
                user_id=user, scopes=list(scopes), rpm_limit=rpm, tpm_limit=tpm, actor="e2e"
            ),
            timeout=10,
        )
    return str(reply.api_key)


def upstream_count(upstream: httpx.Client, route: str, model: str) -> int:
    return int(upstream.get("/_stats").json()["requests"].get(f"{route} {model}", 0))


def usage_rows(http: httpx.Client, key: str, count: int, wait: float = 10.0) -> list[dict[str, Any]]:
    """The key's user's `/v1/usage` rows once `count` of them are written and settled."""
    deadline = time.monotonic() + wait
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = http.get("/v1/usage", headers=bearer(key)).json()["data"]
        if len(rows) >= count and all(r["status"] != "pending" for r in rows):
            return rows
        time.sleep(0.05)
    raise AssertionError(f"expected {count} usage rows, got {rows}")


def reconcile(database_url: str) -> subprocess.CompletedProcess[str]:
    """`tollgate credits reconcile` against a suite's credits database."""
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "credits", "reconcile", "--database-url", database_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class TcpProxy:
    """A loopback TCP relay to `target` that can be cut (listener closed, every connection dropped) and restored:
    a database that goes away and comes back, without touching the machine's own server."""

    def __init__(self, target: tuple[str, int]) -> None:
        from services.launcher import free_port

        self.target = target
        self.port = free_port()
        self._listener: Any = None
        self._open: set[Any] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._open |= {client, server}
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
