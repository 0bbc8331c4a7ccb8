"""`make run`: start the whole suite as separate processes on this machine, and stop it cleanly.

Profiles: `embedded` (SQLite files in the data folder, no Redis, the demo catalog and its demo upstream)
and `prod` (production mode against the local PostgreSQL and Redis). The same `Suite` starts the services
for the end-to-end tests and the benchmark, on free ports.

Each service gets only what it needs: its own identity key (made once into `<data>/identity/`, 0600), the
public keys of the callers its access rules name, and no other service's secrets.

`make run` supervises: a service that dies is started again after a back-off (1 s, doubling to 30 s while it
keeps dying within a minute of its start), as compose's `restart: unless-stopped` and Kubernetes would.
Ports come from `TOLLGATE_<SERVICE>_PORT` (and `TOLLGATE_DEMO_UPSTREAM_PORT`) when set.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.credits.access import ACCESS as CREDITS_ACCESS
from services.health.access import ACCESS as HEALTH_ACCESS
from services.keyvault.access import ACCESS as KEYVAULT_ACCESS
from services.router.access import ACCESS as ROUTER_ACCESS
from services.runtime import identity

ROOT = Path(__file__).resolve().parent.parent
GRPC_SERVICES = ("keyvault", "credits", "health", "router")
LITELLM_OFFLINE = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True"}
# The callers whose public keys each service verifies, from its access rules.
VERIFIES = {
    "router": ROUTER_ACCESS.callers(),
    "credits": CREDITS_ACCESS.callers(),
    "keyvault": KEYVAULT_ACCESS.callers(),
    "health": HEALTH_ACCESS.callers(),
}
# Processes that call other services, each with its own identity.
SIGNS = {"gateway": identity.GATEWAY, "router": identity.ROUTER}
# Secrets of one service alone.
OWNED = {
    "TOLLGATE_ADMIN_KEY": "keyvault",
    "TOLLGATE_KEY_PEPPER": "keyvault",
    "TOLLGATE_VAULT_KEYS": "keyvault",
    "BYOK_ENCRYPTION_KEY": "keyvault",
    "TOLLGATE_KEYVAULT_DATABASE_URL": "keyvault",
    "TOLLGATE_CREDITS_DATABASE_URL": "credits",
    "TOLLGATE_CREDITS_BILLING_API_KEY": "credits",
    "TOLLGATE_HEALTH_DATABASE_URL": "health",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Ports:
    gateway: int = 8080
    router: int = 50051
    credits: int = 50052
    keyvault: int = 50053
    health: int = 50054
    upstream: int = 8090

    @classmethod
    def free(cls) -> Ports:
        return cls(*(free_port() for _ in range(6)))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Ports:
        """The default ports, each overridden by its `TOLLGATE_<NAME>_PORT`; a bad value is one clear line."""
        chosen: dict[str, int] = {}
        for name in cls.__dataclass_fields__:
            setting = f"TOLLGATE_{'DEMO_UPSTREAM' if name == 'upstream' else name.upper()}_PORT"
            value = env.get(setting, "").strip()
            if value:
                if not value.isdigit() or not 0 < int(value) < 65536:
                    raise SystemExit(f"tollgate: invalid configuration: {setting}: {value!r} is not a port")
                chosen[name] = int(value)
        return cls(**chosen)


@dataclass
class Suite:
    """The five services (and, for the demo, the demo upstream) as child processes."""

    data_dir: Path
    ports: Ports = field(default_factory=Ports)
    env: dict[str, str] = field(default_factory=dict)
    demo_upstream: bool = True
    upstream_args: tuple[str, ...] = ()  # e.g. ("--chunk-gap-ms", "50")
    log_dir: Path | None = None
    host: str = "127.0.0.1"
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _logs: list[IO[bytes]] = field(default_factory=list)
    _commands: dict[str, tuple[str, dict[str, str], tuple[str, ...]]] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.ports.gateway}/v1"

    @property
    def upstream_url(self) -> str:
        return f"http://{self.host}:{self.ports.upstream}/v1"

    def environment(self) -> dict[str, str]:
        p = self.ports
        env = {
            **os.environ,
            **LITELLM_OFFLINE,
            "PYTHONUNBUFFERED": "1",
            "TOLLGATE_DATA_DIR": str(self.data_dir),
            "TOLLGATE_HOST": self.host,
            "TOLLGATE_GATEWAY_PORT": str(p.gateway),
            "TOLLGATE_ROUTER_PORT": str(p.router),
            "TOLLGATE_CREDITS_PORT": str(p.credits),
            "TOLLGATE_KEYVAULT_PORT": str(p.keyvault),
            "TOLLGATE_HEALTH_PORT": str(p.health),
            "TOLLGATE_ROUTER_ADDR": f"{self.host}:{p.router}",
            "TOLLGATE_CREDITS_ADDR": f"{self.host}:{p.credits}",
            "TOLLGATE_KEYVAULT_ADDR": f"{self.host}:{p.keyvault}",
            "TOLLGATE_HEALTH_ADDR": f"{self.host}:{p.health}",
            "TOLLGATE_DEMO_UPSTREAM_URL": self.upstream_url,
        }
        env.setdefault("TOLLGATE_CATALOG", str(ROOT / "catalog" / "demo.yaml"))
        env.update(self.env)
        return env

    def identity_key(self, name: str) -> str:
        """The secret of caller `name` (gateway, router, operator): `TOLLGATE_<NAME>_IDENTITY_KEY`."""
        return self.env.get(f"TOLLGATE_{identity.key_setting(name)}") or identity.provision(self.data_dir, name)

    def operator_env(self) -> dict[str, str]:
        """What the `tollgate` CLI needs to act as this suite's operator."""
        return {f"TOLLGATE_{identity.key_setting(identity.OPERATOR)}": self.identity_key(identity.OPERATOR)}

    def environment_for(self, service: str) -> dict[str, str]:
        """The environment of one service: the shared settings, its own secrets and identity, public keys."""
        env = {
            k: v
            for k, v in self.environment().items()
            if OWNED.get(k, service) == service
            and not k.endswith(("_IDENTITY_KEY", "_IDENTITY_PUBLIC_KEY"))
            and k != "TOLLGATE_ROUTER_TOKEN"  # the router's former secret, an alias of its identity key
        }
        if service in SIGNS:
            name = SIGNS[service]
            env[f"TOLLGATE_{identity.key_setting(name)}"] = self.identity_key(name)
        for name in VERIFIES.get(service, ()):
            setting = f"TOLLGATE_{identity.public_setting(name)}"
            env[setting] = self.env.get(setting) or identity.public_key(self.identity_key(name))
        return env

    def _spawn(self, name: str, module: str, env: dict[str, str], *args: str) -> None:
        self._commands[name] = (module, env, args)
        out: IO[bytes] | None = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
            self._logs.append(out)
        self.processes[name] = subprocess.Popen(  # noqa: S603 - our own modules, fixed arguments
            [sys.executable, "-m", module, *args],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )

    def start(self, timeout: float = 90.0) -> None:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.demo_upstream:
            self._spawn(
                "demo_upstream",
                "services.demo_upstream",
                self.environment_for("demo_upstream"),
                "--host",
                self.host,
                "--port",
                str(self.ports.upstream),
                *self.upstream_args,
            )
        for name in (*GRPC_SERVICES, "gateway"):
            self._spawn(name, f"services.{name}", self.environment_for(name))
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = set(self.processes)
        while pending:
            for name in sorted(pending):
                proc = self.processes[name]
                if proc.poll() is not None:
                    hint = self._log_hint(name)
                    raise RuntimeError(f"{name} exited with status {proc.returncode} during start-up{hint}")
                if self.ready(name):
                    pending.discard(name)
            if time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {timeout:.0f}s: {', '.join(sorted(pending))}")
            if pending:
                time.sleep(0.1)

    def _log_hint(self, name: str) -> str:
        return f" (see {self.log_dir / (name + '.log')})" if self.log_dir else ""

    def ready(self, name: str) -> bool:
        """Whether service `name` reports ready (gRPC health SERVING, or HTTP `/health` 200)."""
        if name in GRPC_SERVICES:
            return serving(f"{self.host}:{getattr(self.ports, name)}")
        port = self.ports.gateway if name == "gateway" else self.ports.upstream
        try:
            with urllib.request.urlopen(f"http://{self.host}:{port}/health", timeout=1) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    def stop(self, grace: float = 15.0) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.processes.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self._logs:
            log.close()
        self._logs.clear()

    def bootstrap_keys(self) -> dict[str, str]:
        data: dict[str, str] = json.loads((self.data_dir / "bootstrap-keys.json").read_text())
        return data

    def dead(self) -> list[str]:
        return [name for name, proc in self.processes.items() if proc.poll() is not None]

    def kill(self, name: str) -> None:
        """SIGKILL one service (the fault suite's crash): no drain, no clean-up."""
        proc = self.processes[name]
        proc.kill()
        proc.wait()

    def restart(self, name: str) -> None:
        """Start a service that stopped again, with the command and environment it first had."""
        module, env, args = self._commands[name]
        self._spawn(name, module, env, *args)


@dataclass
class Supervisor:
    """Restarts the suite's dead services with back-off, as an orchestrator would; says so on stderr."""

    suite: Suite
    first_delay: float = 1.0
    max_delay: float = 30.0
    stable_after: float = 60.0  # a service up this long starts its next back-off from `first_delay`
    delays: dict[str, float] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)
    due: dict[str, float] = field(default_factory=dict)

    def tick(self, now: float | None = None) -> list[str]:
        """Notice deaths and restart whatever is due; the services restarted."""
        now = time.monotonic() if now is None else now
        restarted = []
        for name in self.suite.dead():
            if name not in self.due:
                up = now - self.started.get(name, now - self.stable_after)
                delay = (
                    self.first_delay
                    if up >= self.stable_after
                    else min(self.max_delay, self.delays.get(name, self.first_delay / 2) * 2)
                )
                self.delays[name] = delay
                self.due[name] = now + delay
                code = self.suite.processes[name].returncode
                print(f"tollgate: {name} exited with status {code}; restarting in {delay:g}s", file=sys.stderr)
            elif now >= self.due[name]:
                del self.due[name]
                self.suite.restart(name)
                self.started[name] = now
                restarted.append(name)
                print(f"tollgate: {name} restarted", file=sys.stderr, flush=True)
        return restarted


def serving(address: str, timeout: float = 1.0) -> bool:
    with grpc.insecure_channel(address) as chan:
        try:
            reply = health_pb2_grpc.HealthStub(chan).Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def _secret_env(path: Path) -> dict[str, str]:
    """The production secrets for a local `prod` profile, made once into a 0600 file and reused."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        values = {
            "TOLLGATE_ADMIN_KEY": "tg-" + secrets.token_urlsafe(32),
            "TOLLGATE_KEY_PEPPER": secrets.token_urlsafe(32),
            "TOLLGATE_VAULT_KEYS": "v1:" + secrets.token_urlsafe(32),
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.writelines(f"{k}={v}\n" for k, v in values.items())
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k: v for k, v in pairs if not os.environ.get(k)}


async def _ensure_databases(url: str, names: list[str]) -> None:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=5)
    try:
        existing = {r["datname"] for r in await conn.fetch("SELECT datname FROM pg_database")}
        for name in names:
            if name not in existing:
                await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def production_env(data_dir: Path, postgres: str, redis: str, prefix: str = "tollgate") -> dict[str, str]:
    """Environment for production mode on this machine: a database per service, Redis, stored secrets."""
    names = {svc: f"{prefix}_{svc}" for svc in ("credits", "keyvault", "health")}
    asyncio.run(_ensure_databases(postgres, list(names.values())))
    base = postgres.rsplit("/", 1)[0]
    env = {f"TOLLGATE_{svc.upper()}_DATABASE_URL": f"{base}/{db}" for svc, db in names.items()}
    env |= {"TOLLGATE_MODE": "production", "TOLLGATE_REDIS_URL": redis, **_secret_env(data_dir / "prod-secrets.env")}
    return env


@contextmanager
def running(suite: Suite) -> Iterator[Suite]:
    suite.start()
    try:
        yield suite
    finally:
        suite.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.launcher", description=__doc__)
    parser.add_argument("--profile", choices=("embedded", "prod"), default="embedded")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("TOLLGATE_DATA_DIR", "data")))
    args = parser.parse_args()

    env: dict[str, str] = {}
    if args.profile == "prod":
        postgres = os.environ.get("TOLLGATE_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
        try:
            env = production_env(
                args.data_dir, postgres, os.environ.get("TOLLGATE_REDIS_URL", "redis://127.0.0.1:6379/0")
            )
        except (TimeoutError, OSError) as exc:
            sys.exit(f"tollgate: cannot reach PostgreSQL at TOLLGATE_POSTGRES_URL ({type(exc).__name__}: {exc})")
    suite = Suite(data_dir=args.data_dir.resolve(), ports=Ports.from_env(os.environ), env=env)
    print(f"starting tollgate ({args.profile}) …", flush=True)
    stop = False

    def request_stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        suite.start()
    except (RuntimeError, TimeoutError) as exc:
        # The service said why in its own one line above; this names which one stopped the start.
        sys.exit(f"tollgate: {exc}")
    supervisor = Supervisor(suite)
    try:
        print(f"\ntollgate is up: {suite.base_url}")
        print(f"  console       : http://{suite.host}:{suite.ports.gateway}/console (sign in with a key)")
        if args.profile == "embedded":
            keys = suite.bootstrap_keys()
            print(f"  demo user key : {keys['demo_key']}")
            print(f"  admin key     : {keys['admin_key']}")
            print(
                f"\ntry:\n  curl {suite.base_url}/chat/completions -H 'Authorization: Bearer {keys['demo_key']}' "
                "-H 'Content-Type: application/json' "
                '-d \'{"model": "demo-echo", "messages": [{"role": "user", "content": "hello"}]}\''
            )
        else:
            print(f"  admin key     : in {args.data_dir / 'prod-secrets.env'} (TOLLGATE_ADMIN_KEY)")
        print("\nCtrl-C stops everything; a service that dies is restarted.", flush=True)
        while not stop:
            supervisor.tick()
            time.sleep(0.2)
    finally:
        suite.stop()
    print("tollgate stopped.")


if __name__ == "__main__":
    main()
