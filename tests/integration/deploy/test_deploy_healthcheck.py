"""The image's HEALTHCHECK script against live servers: grpc.health.v1 for gRPC services, /health for the gateway."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "deploy" / "docker" / "healthcheck.py"


def healthcheck(env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *command],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def grpc_health() -> Iterator[tuple[int, health.HealthServicer]]:
    servicer = health.HealthServicer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port, servicer
    server.stop(None)


def test_grpc_service_follows_its_serving_status(grpc_health: tuple[int, health.HealthServicer]) -> None:
    port, servicer = grpc_health
    env = {"TOLLGATE_ROUTER_PORT": str(port)}
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert healthcheck(env, "python", "-m", "services.router").returncode == 0
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert healthcheck(env, "python", "-m", "services.router").returncode == 1


def test_grpc_service_that_is_down_is_unhealthy() -> None:
    assert (
        healthcheck({"TOLLGATE_KEYVAULT_PORT": str(free_port())}, "python", "-m", "services.keyvault").returncode == 1
    )


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        return


def test_gateway_is_checked_over_http() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {"TOLLGATE_GATEWAY_PORT": str(server.server_address[1])}
        assert healthcheck(env, "/sbin/docker-init", "--", "python", "-m", "services.gateway").returncode == 0
    finally:
        server.shutdown()
        server.server_close()
    assert healthcheck(env, "python", "-m", "services.gateway").returncode == 1


def test_a_command_without_a_service_is_an_error() -> None:
    result = healthcheck({}, "python", "-m", "http.server")
    assert result.returncode != 0
    assert "no tollgate service" in result.stderr
