"""Container health check: is the tollgate service in this container serving?

One image runs every service, so the check first finds which one from the container's command line
(`python -m services.<name>`), then asks it on its own port: grpc.health.v1 `Check` for the gRPC
services, `GET /health` for the gateway. Exit 0 when serving, 1 otherwise (Docker's HEALTHCHECK contract).
"""

from __future__ import annotations

import importlib
import sys
import urllib.request
from pathlib import Path

GRPC_SERVICES = ("router", "credits", "keyvault", "health")
TIMEOUT = 3.0


def service_of(cmdline: list[str]) -> str | None:
    """The service a command line runs: `python -m services.router` -> `router`."""
    for arg in cmdline:
        if arg.startswith("services."):
            return arg.split(".", 1)[1]
    return None


def container_command(proc: Path = Path("/proc")) -> list[str]:
    """The command line of the container's main process (PID 1, or the child of an init such as tini)."""
    raw = (proc / "1" / "cmdline").read_bytes()
    return [part.decode() for part in raw.split(b"\0") if part]


def port_of(service: str) -> int:
    """The port the service listens on, read through its own settings class (environment + defaults)."""
    module = importlib.import_module(f"services.{service}.settings")
    field = f"{service}_port"
    for value in vars(module).values():
        if isinstance(value, type) and field in getattr(value, "model_fields", {}):
            return int(getattr(value(), field))
    raise SystemExit(f"healthcheck: services.{service}.settings has no {field}")


def grpc_serving(port: int) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def http_alive(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=TIMEOUT) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def check(cmdline: list[str]) -> bool:
    service = service_of(cmdline)
    if service == "gateway":
        return http_alive(port_of("gateway"))
    if service in GRPC_SERVICES:
        return grpc_serving(port_of(service))
    raise SystemExit(f"healthcheck: no tollgate service in the container command {' '.join(cmdline)!r}")


def main() -> None:
    sys.path.insert(0, str(Path.cwd()))
    cmdline = sys.argv[1:] or container_command()
    sys.exit(0 if check(cmdline) else 1)


if __name__ == "__main__":
    main()
