"""What the runner computes: /proc CPU and RSS of process trees, added latency, soak growth, py-spy stacks."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

from bench import report
from bench.procstat import Meter, cpu_seconds, family, spent
from bench.profile import Profile, frame_name
from bench.run import growth, matrix

_BURN_IN_CHILD = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'x = bytearray(64 << 20); import time; time.sleep(30)'])\n"
    "end = time.process_time() + 0.3\n"
    "while time.process_time() < end: pass\n"
    "time.sleep(30)\n"
)


def test_meter_sums_cpu_and_memory_over_the_whole_process_tree() -> None:
    proc = subprocess.Popen([sys.executable, "-c", _BURN_IN_CHILD])
    try:
        meter = Meter({"svc": proc.pid})
        deadline = time.monotonic() + 20
        while (meter.processes()["svc"] < 2 or meter.rss_mb()["svc"] < 64) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert meter.processes()["svc"] == 2
        assert meter.rss_mb()["svc"] >= 64  # the child's buffer counts as the service's
        while meter.cpu()["svc"] < 0.3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert meter.cpu()["svc"] >= 0.3
        assert len(family(proc.pid)) == 2
    finally:
        for pid in family(proc.pid)[::-1]:
            subprocess.run(["kill", str(pid)], check=False)
        proc.wait()
    assert cpu_seconds([proc.pid]) == 0  # gone: counts nothing


def test_meter_finds_external_processes_by_command_line() -> None:
    marker = "bench-external-marker-7d1f"
    proc = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep(30)  # {marker}"])
    try:
        meter = Meter({}, {"db": marker})
        assert set(meter.external_cpu()) == {"db"}
        deadline = time.monotonic() + 10
        while not meter.external_cpu()["db"] and time.monotonic() < deadline:
            time.sleep(0.02)  # until the child has exec'd: before, it still has its parent's command line
        assert list(meter.external_cpu()["db"]) == [proc.pid]
    finally:
        proc.kill()
        proc.wait()


def test_external_cpu_counts_only_processes_alive_at_the_end() -> None:
    assert spent({1: 1.0, 2: 5.0}, {1: 1.5, 3: 0.25}) == 0.75  # 2 ended: lost, never negative


def _run(p50: float, p99: float, ttft: float | None = None, gap: float = 0.0) -> dict[str, object]:
    run: dict[str, object] = {"latency_ms": {"p50": p50, "p90": p50, "p99": p99}}
    if ttft is not None:
        run |= {"ttft_ms": {"p50": ttft, "p99": ttft * 2}, "gap_ms": {"mean": gap, "p99": gap}, "chunks_per_request": 4}
    return run


def test_added_latency_is_the_target_minus_the_upstream_alone() -> None:
    plus = report.added(_run(3.0, 9.0), _run(1.0, 2.0))
    assert (plus["p50"], plus["p99"], plus["ttft_p50"]) == (2.0, 7.0, None)
    stream = report.added(_run(5.0, 9.0, ttft=1.5, gap=0.25), _run(1.0, 2.0, ttft=0.5, gap=0.05))
    assert stream["ttft_p50"] == 1.0
    assert stream["ttft_p99"] == 2.0
    assert stream["gap_mean"] is not None and abs(stream["gap_mean"] - 0.2) < 1e-9


def test_the_matrix_covers_every_mode_concurrency_and_latency() -> None:
    names = {s.name for s in matrix()}
    assert len(names) == 8
    assert {"non-stream c1 0ms", "stream c64 50ms"} <= names


def test_soak_growth_is_measured_over_the_second_half() -> None:
    samples = [(float(t), {"a": 100.0 + t, "b": 50.0}) for t in range(11)]
    rss = growth(samples)
    assert rss["a"] == {"start": 100.0, "half": 105.0, "end": 110.0, "growth_pct": 5 / 105 * 100}
    assert rss["b"]["growth_pct"] == 0.0
    assert rss["total"]["end"] == 160.0


def test_profile_sums_samples_per_function_self_and_inclusive() -> None:
    stacks = (
        'process 1:"python -m services.router";main (services/router/__main__.py:10);'
        "call (/x/site-packages/httpx/_client.py:5);send (/x/site-packages/httpx/_client.py:9) 6\n"
        'process 1:"python -m services.router";main (services/router/__main__.py:10);'
        "call (/x/site-packages/httpx/_client.py:7) 4\n"
    )
    prof = Profile.parse(stacks)
    assert prof.total == 10
    assert prof.own["send (httpx/_client.py)"] == 6
    assert prof.own["call (httpx/_client.py)"] == 4  # two lines of one function count as one
    assert prof.inclusive["call (httpx/_client.py)"] == 10
    assert prof.inclusive["main (services/router/__main__.py)"] == 10
    assert frame_name("weird frame") == "weird frame"


def _scenario(name: str, tg_p50: float, ll_p50: float) -> dict[str, object]:
    def side(p50: float) -> dict[str, object]:
        return {
            "latency_ms": {"p50": p50, "p90": p50, "p99": p50 * 2},
            "rps": 1000 / p50,
            "cpu_ms_per_request": p50 / 2,
            "cpu_ms_external": {"postgres": 0.5},
            "errors": 0,
            "status_errors": 0,
        }

    direct = side(1.0)
    row: dict[str, object] = {"name": name, "direct": direct, "tollgate": side(tg_p50), "litellm": side(ll_p50)}
    row["tollgate_added"] = report.added(row["tollgate"], direct)  # type: ignore[arg-type]
    row["litellm_added"] = report.added(row["litellm"], direct)  # type: ignore[arg-type]
    return row


def test_tables_show_each_scenario_and_ratios_in_favour_of_the_faster() -> None:
    rows = [_scenario("non-stream c1 0ms", 3.0, 11.0)]
    assert "non-stream c1 0ms" in report.scenario_table(rows, "tollgate")
    comparison = report.comparison_table(rows)
    assert "5.0x" in comparison  # added p50: (11 - 1) / (3 - 1)
    assert "3.7x" in comparison  # req/s: (1000 / 3) / (1000 / 11)
    assert "tollgate  gateway 70  total 70" in report.rss_table({"tollgate": {"gateway": 70.0}})
    idle = report.idle_table({"tollgate": {"gateway": 0.25, "health": 0.5}})
    assert "tollgate  gateway 0.25  health 0.50  total 0.75" in idle
    both = {
        "tollgate": {"p99_limit_ms": 50.0, "rps": 900.0, "concurrency": 16},
        "litellm": {"p99_limit_ms": 50.0, "rps": 300.0, "concurrency": 8},
    }
    assert "tollgate / LiteLLM: 3.0x" in report.capacity_summary(both)


def test_litellm_config_serves_the_benchmark_models_from_their_upstreams() -> None:
    from bench.litellm_proxy import config

    cfg = config({"bench-0ms": "http://127.0.0.1:1/v1"}, "sk-master")
    assert cfg["general_settings"] == {"master_key": "sk-master"}
    models: Any = cfg["model_list"]
    (entry,) = models
    assert entry["model_name"] == "bench-0ms"
    assert entry["litellm_params"]["api_base"] == "http://127.0.0.1:1/v1"
    assert entry["litellm_params"]["model"].startswith("openai/")
