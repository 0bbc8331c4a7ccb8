"""`make run` supervises: a dead service is restarted with back-off; a start-up refusal is one line."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from services.launcher import Ports, Suite, Supervisor


@dataclass
class _Proc:
    returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode


@dataclass
class _Suite:
    processes: dict[str, Any] = field(default_factory=lambda: {"credits": _Proc(), "router": _Proc()})
    restarts: list[str] = field(default_factory=list)

    def dead(self) -> list[str]:
        return [n for n, p in self.processes.items() if p.poll() is not None]

    def restart(self, name: str) -> None:
        self.restarts.append(name)
        self.processes[name] = _Proc()


def test_a_dead_service_is_restarted_after_a_growing_back_off(capsys: pytest.CaptureFixture[str]) -> None:
    suite = _Suite()
    sup = Supervisor(cast(Suite, suite), first_delay=1.0, max_delay=4.0, stable_after=60.0)
    suite.processes["credits"].returncode = -9
    assert sup.tick(0.0) == []
    assert sup.tick(0.5) == []
    assert sup.tick(1.0) == ["credits"] and suite.restarts == ["credits"]
    delays = []
    for start in (10.0, 20.0, 30.0, 40.0):  # dies again soon after each restart: 2, 4, 4, 4 s
        suite.processes["credits"].returncode = 1
        sup.tick(start)
        delays.append(sup.due["credits"] - start)
        sup.tick(sup.due["credits"])
    assert delays == [2.0, 4.0, 4.0, 4.0]
    suite.processes["credits"].returncode = 1
    sup.tick(200.0)  # it had been up for a long while: back to the first delay
    assert sup.due["credits"] == 201.0
    assert suite.processes["router"].poll() is None and "router" not in suite.restarts
    err = capsys.readouterr().err
    assert "tollgate: credits exited with status -9; restarting in 1s" in err and "credits restarted" in err


def test_ports_come_from_the_settings() -> None:
    ports = Ports.from_env({"TOLLGATE_GATEWAY_PORT": "18080", "TOLLGATE_DEMO_UPSTREAM_PORT": "18090"})
    assert (ports.gateway, ports.upstream, ports.router) == (18080, 18090, 50051)
    with pytest.raises(SystemExit, match="TOLLGATE_CREDITS_PORT: 'x' is not a port"):
        Ports.from_env({"TOLLGATE_CREDITS_PORT": "x"})


def test_a_bad_port_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import services.launcher as launcher

    monkeypatch.setenv("TOLLGATE_GATEWAY_PORT", "80800")
    monkeypatch.setattr(sys, "argv", ["launcher", "--data-dir", str(tmp_path)])
    with pytest.raises(SystemExit) as stopped:
        launcher.main()
    assert stopped.value.code == "tollgate: invalid configuration: TOLLGATE_GATEWAY_PORT: '80800' is not a port"


def test_a_service_refusing_to_start_is_named_in_one_line_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import services.launcher as launcher

    def refused(self: Suite, timeout: float = 90.0) -> None:
        raise RuntimeError("router exited with status 1 during start-up")

    monkeypatch.setattr(launcher.Suite, "start", refused)
    monkeypatch.setattr(sys, "argv", ["launcher", "--data-dir", str(tmp_path)])
    with pytest.raises(SystemExit) as stopped:
        launcher.main()
    assert stopped.value.code == "tollgate: router exited with status 1 during start-up"
