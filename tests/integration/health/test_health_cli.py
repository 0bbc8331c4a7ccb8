"""`tollgate health show|check-now` against a real ProviderHealth gRPC server."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import grpc
import orjson
import pytest

from services.cli import health as cli
from services.demo_upstream.server import Upstream
from services.health.access import ACCESS
from services.health.servicer import ProviderHealthServicer
from services.health.targets import Target
from tests import identities
from tollgate.health.v1 import health_pb2_grpc

from .conftest import FakeClock, MakeMonitor


@pytest.fixture
async def stub(tmp_path: Path, upstream: Upstream, make_monitor: MakeMonitor) -> AsyncIterator[cli.Stub]:
    targets = [Target("demo", upstream.base_url), Target("gone", "http://127.0.0.1:9/v1")]
    monitor = await make_monitor(targets, f"sqlite:///{tmp_path}/health.db", FakeClock())
    server = grpc.aio.server(interceptors=[identities.guard(ACCESS)])
    health_pb2_grpc.add_ProviderHealthServicer_to_server(ProviderHealthServicer(monitor), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with identities.aio_channel(f"127.0.0.1:{port}", "operator") as channel:
        yield cast(cli.Stub, health_pb2_grpc.ProviderHealthStub(channel))
    await server.stop(None)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tollgate")
    cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


async def test_check_now_then_show(stub: cli.Stub, capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("health", "check-now", "demo", "--json")
    assert args.func is not None
    assert await cli.check_now(stub, args) == 0
    (checked,) = orjson.loads(capsys.readouterr().out)
    assert checked["provider"] == "demo" and checked["state"] == "healthy"

    assert await cli.check_now(stub, parse("health", "check-now")) == 2  # `gone` does not answer
    capsys.readouterr()
    assert await cli.show(stub, parse("health", "show")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["provider", "state"]
    assert any(line.startswith("gone ") and " down " in line and "cannot connect" in line for line in lines)


async def test_maintenance_holds_and_its_log(stub: cli.Stub, capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("health", "maintenance", "gone", "up", "--reason", "known outage of the probe path", "--json")
    assert await cli.maintenance(stub, args) == 0
    (held,) = orjson.loads(capsys.readouterr().out)
    assert held["state"] == "healthy" and held["maintenance"]["state"] == "up"
    assert held["maintenance"]["by"].startswith("operator cli")
    assert await cli.check_now(stub, parse("health", "check-now")) == 0  # its failing probe does not matter now
    capsys.readouterr()
    assert await cli.show(stub, parse("health", "show")) == 0
    assert any(line.startswith("gone ") and "(held up)" in line for line in capsys.readouterr().out.splitlines())

    assert await cli.maintenance(stub, parse("health", "maintenance", "gone", "auto")) == 0
    capsys.readouterr()
    assert await cli.maintenance_log(stub, parse("health", "maintenance-log", "gone")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["when", "provider", "state", "by", "reason"]
    assert [line.split()[3] for line in lines[1:]] == ["auto", "up"]

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await cli.maintenance(stub, parse("health", "maintenance", "gone", "down"))  # no reason
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
