"""`make bench`: the suite in its production profile under load, beside the upstream alone (and LiteLLM proxy).

One demo upstream process per upstream-latency setting (0 and 50 ms); the suite (PostgreSQL, Redis) with
`bench/catalog.yaml`, which serves `bench-0ms` and `bench-50ms` from them; a user key with plenty of
credits. Every scenario (non-stream and stream, concurrency 1 and 64, upstream latency 0 and 50 ms) runs
the same load against the upstream alone and through the target, so the difference is what the target
adds. CPU is read from /proc for every service process tree before and after each run.

    python -m bench.run                 # tollgate; table on stdout, JSON in bench/results/
    python -m bench.run --litellm       # and LiteLLM proxy on the same upstreams, side by side
    python -m bench.run --peers         # LiteLLM proxy and Portkey's gateway, side by side (--portkey: it alone)
    python -m bench.run --suite embedded  # the embedded profile (SQLite, no Redis) beside the production one
    python -m bench.run --soak 100000   # steady load, RSS of every service sampled
    python -m bench.run --profile 20    # py-spy every service under load, top functions
    python -m bench.run --quick         # 2-second runs while developing
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import orjson

from bench import report
from bench.litellm_proxy import LiteLLMProxy
from bench.loadgen import AUTH_ENV, HEADERS_ENV, format_headers, wrk_available
from bench.portkey_gateway import PortkeyGateway, upstream_routes
from bench.procstat import Meter, spent
from bench.profile import record
from services.launcher import ROOT, Ports, Suite, free_port, production_env
from services.runtime.identity import SignedChannel, Signer
from tollgate.credits.v1 import credits_pb2, credits_pb2_grpc
from tollgate.keyvault.v1 import keyvault_pb2, keyvault_pb2_grpc

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
CATALOG = BENCH / "catalog.yaml"
LATENCIES_MS = (0, 50)
MODES = ("non-stream", "stream")
CONCURRENCIES = (1, 64)
EMBEDDED_EXTRA = 32  # `--suite embedded` adds this concurrency: the newcomer figure
USER = "bench-user"
PROMPT = "say hello to the benchmark of this gateway please"
DB_PREFIX = "tollgate_bench"
GRANT_MICRO = 10**15


@dataclass(frozen=True)
class Scenario:
    mode: str
    concurrency: int
    latency_ms: int

    @property
    def name(self) -> str:
        return f"{self.mode} c{self.concurrency} {self.latency_ms}ms"

    @property
    def stream(self) -> bool:
        return self.mode == "stream"


def matrix(concurrencies: tuple[int, ...] = CONCURRENCIES) -> list[Scenario]:
    return [Scenario(m, c, lat) for lat in LATENCIES_MS for m in MODES for c in concurrencies]


def model_for(latency_ms: int) -> str:
    return f"bench-{latency_ms}ms"


def body(model: str, stream: bool) -> bytes:
    payload: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 64}
    if stream:
        payload |= {"stream": True, "stream_options": {"include_usage": True}}
    return orjson.dumps(payload)


@dataclass
class Target:
    """Something to load: its chat URL, the Authorization header, how it names models, its processes."""

    name: str
    chat_url: str
    auth: str
    model: dict[int, str]
    meter: Meter | None = None
    headers: dict[int, dict[str, str]] = field(default_factory=dict)  # per upstream latency: a peer's routing


@dataclass
class Settings:
    duration: float
    warmup: float
    engine: str
    workers: int
    log_dir: Path
    step: float = 5.0  # seconds per step of the capacity search
    concurrencies: tuple[int, ...] = CONCURRENCIES


def load(target: Target, scenario: Scenario, settings: Settings, duration: float | None = None) -> dict[str, Any]:
    """One run of the load generator against `target`, with the CPU its services spent meanwhile."""
    engine = "python" if scenario.stream else settings.engine
    cmd = [
        sys.executable,
        "-m",
        "bench.loadgen",
        "--url",
        target.chat_url,
        "--body",
        body(target.model[scenario.latency_ms], scenario.stream).decode(),
        "--concurrency",
        str(scenario.concurrency),
        "--duration",
        str(duration if duration is not None else settings.duration),
        "--engine",
        engine,
    ]
    if scenario.stream:
        cmd.append("--stream")
    cpu_before = target.meter.cpu() if target.meter else {}
    external_before = target.meter.external_cpu() if target.meter else {}
    env = {
        **os.environ,
        AUTH_ENV: target.auth,
        HEADERS_ENV: format_headers(target.headers.get(scenario.latency_ms, {})),
    }
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed against {target.name}: {out.stderr.strip()[-2000:]}")
    result: dict[str, Any] = orjson.loads(out.stdout)
    if target.meter is not None:
        cpu_after = target.meter.cpu()
        used = {name: (cpu_after[name] - cpu_before.get(name, 0.0)) * 1000 for name in cpu_after}
        done = max(1, result["requests"])
        result["cpu_ms_by_service"] = {name: ms / done for name, ms in used.items()}
        result["cpu_ms_per_request"] = sum(used.values()) / done
        external_after = target.meter.external_cpu()
        result["cpu_ms_external"] = {
            name: spent(external_before.get(name, {}), pids) * 1000 / done for name, pids in external_after.items()
        }
        result["rss_mb"] = target.meter.rss_mb()
        result["processes"] = target.meter.processes()
    return result


def refusal(target: Target, stream: bool) -> str | None:
    """One request through the target before any load: why it failed, or None when it answered well."""
    request = urllib.request.Request(  # noqa: S310 - our own local URL
        target.chat_url,
        data=body(target.model[LATENCIES_MS[0]], stream),
        headers={
            "Content-Type": "application/json",
            "Authorization": target.auth,
            **target.headers.get(LATENCIES_MS[0], {}),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310
            text = reply.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        return f"{target.name} refused a {'stream' if stream else 'chat'} request: {exc.code} {detail}"
    except OSError as exc:
        return f"{target.name} did not answer: {exc}"
    if stream and b"data: [DONE]" not in text:
        return f"{target.name}'s stream did not end with [DONE]: {text[-300:]!r}"
    return None


def check(target: Target, stream: bool) -> None:
    """A clear stop instead of a table of errors when the target cannot serve the request."""
    problem = refusal(target, stream)
    if problem is not None:
        sys.exit(f"bench: {problem}")


# -- the pieces that run -----------------------------------------------------------------------------------


@contextmanager
def upstreams(log_dir: Path) -> Iterator[dict[int, str]]:
    """One demo upstream process per latency setting; yields their base URLs (…/v1) by latency."""
    procs: list[subprocess.Popen[bytes]] = []
    urls: dict[int, str] = {}
    try:
        for latency in LATENCIES_MS:
            port = free_port()
            log = open(log_dir / f"upstream-{latency}ms.log", "ab")  # noqa: SIM115 - lives as long as the process
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "services.demo_upstream",
                        "--port",
                        str(port),
                        "--latency-ms",
                        str(latency),
                        "--chunks",
                        "8",
                        "--chunk-gap-ms",
                        "0",
                    ],
                    cwd=ROOT,
                    stdout=log,
                    stderr=log,
                )
            )
            log.close()
            urls[latency] = f"http://127.0.0.1:{port}/v1"
        for url in urls.values():
            _wait_http(url.removesuffix("/v1") + "/health", 30)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - our own local URL
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout:.0f}s") from None
            time.sleep(0.1)


async def _drop_databases(url: str, names: list[str]) -> None:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=5)
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@contextmanager
def tollgate(
    data_dir: Path, upstream_urls: Mapping[int, str], settings: Settings, profile: str = "prod"
) -> Iterator[tuple[Suite, Target]]:
    """The suite on fresh databases, with a funded user key: `prod` is the production profile (PostgreSQL,
    Redis, `settings.workers` gateway workers), `embedded` the one `make run` starts (SQLite files, no Redis,
    one gateway worker), named `embedded` in the results."""
    env: dict[str, str] = {
        "TOLLGATE_CATALOG": str(CATALOG),
        "TOLLGATE_BENCH_PLATFORM_KEY": "sk-bench-platform-" + secrets.token_hex(8),
        **{f"TOLLGATE_BENCH_UPSTREAM_{lat}MS_URL": url for lat, url in upstream_urls.items()},
    }
    external: dict[str, str] = {}
    if profile == "prod":
        postgres = os.environ.get("TOLLGATE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
        redis = os.environ.get("TOLLGATE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
        asyncio.run(_drop_databases(postgres, [f"{DB_PREFIX}_{svc}" for svc in ("credits", "keyvault", "health")]))
        env |= production_env(data_dir, postgres, redis, prefix=DB_PREFIX)
        env |= {
            "TOLLGATE_GATEWAY_WORKERS": str(settings.workers),
            "TOLLGATE_REDIS_PREFIX": f"{DB_PREFIX}:{secrets.token_hex(4)}:",
        }
        external = {"postgres": f" {DB_PREFIX}_"}
    log_dir = settings.log_dir if profile == "prod" else settings.log_dir / profile
    suite = Suite(data_dir, Ports.free(), env=env, demo_upstream=False, log_dir=log_dir)
    print(f"starting the suite ({'production' if profile == 'prod' else profile} profile) …", flush=True)
    suite.start()
    try:
        key = provision(suite)
        target = Target(
            name="tollgate" if profile == "prod" else profile,
            chat_url=f"{suite.base_url}/chat/completions",
            auth=f"Bearer {key}",
            model={lat: model_for(lat) for lat in LATENCIES_MS},
            meter=Meter({name: proc.pid for name, proc in suite.processes.items()}, external),
        )
        yield suite, target
    finally:
        suite.stop()


def provision(suite: Suite) -> str:
    """A user key (KeyVault.CreateApiKey) and plenty of credits (Credits.Grant), as the suite's operator."""
    operator = Signer("operator", suite.identity_key("operator"))
    with SignedChannel(grpc.insecure_channel(f"{suite.host}:{suite.ports.keyvault}"), operator) as chan:
        created = keyvault_pb2_grpc.KeyVaultStub(chan).CreateApiKey(
            keyvault_pb2.CreateApiKeyRequest(user_id=USER, scopes=["user"], name="benchmark", actor="bench"),
            timeout=10,
        )
    with SignedChannel(grpc.insecure_channel(f"{suite.host}:{suite.ports.credits}"), operator) as chan:
        credits_pb2_grpc.CreditsStub(chan).Grant(
            credits_pb2.GrantRequest(
                user_id=USER,
                amount_micro=GRANT_MICRO,
                idempotency_key="bench-grant-" + secrets.token_hex(8),
                kind="grant",
                reason="benchmark",
                actor="bench",
            ),
            timeout=10,
        )
    return str(created.api_key)


@contextmanager
def start_peer(name: str, upstream_urls: Mapping[int, str], workers: int, log_dir: Path) -> Iterator[Target]:
    """A peer gateway (`litellm` or `portkey`) on the same upstreams, as a Target; stopped on exit."""
    if name == "litellm":
        proxy = LiteLLMProxy({model_for(lat): url for lat, url in upstream_urls.items()}, free_port(), workers, log_dir)
        print(f"starting LiteLLM proxy ({workers} workers) …", flush=True)
        proxy.start()
        try:
            assert proxy.process is not None
            yield Target(
                name="litellm",
                chat_url=f"{proxy.base_url}/chat/completions",
                auth=f"Bearer {proxy.master_key}",
                model={lat: model_for(lat) for lat in LATENCIES_MS},
                meter=Meter({"litellm": proxy.process.pid}),
            )
        finally:
            proxy.stop()
    elif name == "portkey":
        gateway = PortkeyGateway(free_port(), log_dir)
        print("starting Portkey's gateway (one Node process) …", flush=True)
        gateway.start()
        try:
            assert gateway.process is not None
            yield portkey_target(gateway.base_url, upstream_urls, gateway.process.pid)
        finally:
            gateway.stop()
    else:
        raise ValueError(f"unknown peer {name!r}")


def portkey_target(base_url: str, upstream_urls: Mapping[int, str], pid: int | None = None) -> Target:
    """Portkey routes by header: the upstream's own model name, the headers naming each latency's upstream."""
    return Target(
        name="portkey",
        chat_url=f"{base_url}/chat/completions",
        auth="Bearer sk-bench-upstream",
        model=dict.fromkeys(upstream_urls, "demo-echo"),
        meter=Meter({"portkey": pid}) if pid is not None else None,
        headers=upstream_routes(upstream_urls),
    )


def direct_target(upstream_urls: Mapping[int, str]) -> dict[int, Target]:
    return {
        lat: Target("upstream", f"{url}/chat/completions", "Bearer sk-bench-direct", {lat: "demo-echo"})
        for lat, url in upstream_urls.items()
    }


def warm_up(target: Target, settings: Settings, modes: tuple[str, ...] = MODES) -> None:
    """Every model and mode at concurrency 64 for a moment: connections, caches and JITs settle first."""
    if settings.warmup <= 0:
        return
    for lat in target.model:
        for mode in modes:
            load(target, Scenario(mode, 64, lat), settings, duration=settings.warmup)


def run_scenarios(
    target: Target,
    direct: Mapping[int, Target],
    settings: Settings,
    into: list[dict[str, Any]],
    modes: tuple[str, ...] = MODES,
) -> None:
    """Run every scenario of `modes` against `target` (and, the first time, the upstream alone), into `into`."""
    for i, scenario in enumerate(matrix(settings.concurrencies)):
        if len(into) <= i:
            into.append({"name": scenario.name, **scenario.__dict__})
        row = into[i]
        if scenario.mode not in modes:
            continue
        if "direct" not in row:
            row["direct"] = load(direct[scenario.latency_ms], scenario, settings)
        row[target.name] = run = load(target, scenario, settings)
        row[f"{target.name}_added"] = plus = report.added(run, row["direct"])
        ttft = "" if plus["ttft_p50"] is None else f"  +TTFT p50 {plus['ttft_p50']:.2f} ms"
        print(
            f"  {target.name:<9} {scenario.name:<20} p50 {run['latency_ms']['p50']:7.2f} ms  "
            f"p99 {run['latency_ms']['p99']:7.2f} ms  {run['rps']:7.0f} req/s  +p50 {plus['p50']:6.2f} ms{ttft}  "
            f"CPU {run.get('cpu_ms_per_request', 0):.2f} ms/req",
            flush=True,
        )


def growth(samples: list[tuple[float, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """RSS (MB) of each service and their total at the start, half-way (in time) and end of a run of samples,
    and the growth over the second half in percent."""
    last = samples[-1][0]
    half = min(range(len(samples)), key=lambda i: abs(samples[i][0] - last / 2))

    def at(i: int, name: str) -> float:
        row = samples[i][1]
        return sum(row.values()) if name == "total" else row[name]

    out = {}
    for name in [*samples[0][1], "total"]:
        mid, end = at(half, name), at(-1, name)
        out[name] = {
            "start": at(0, name),
            "half": mid,
            "end": end,
            "growth_pct": (end - mid) / mid * 100 if mid else 0.0,
        }
    return out


def capacity(target: Target, settings: Settings, p99_limit_ms: float = 50.0) -> dict[str, Any]:
    """Non-stream load on the 0 ms upstream at doubling concurrency until p99 passes the limit: the best
    requests/s seen with p99 within it."""
    steps = []
    best: dict[str, Any] = {"rps": 0.0, "concurrency": 0, "p99_ms": 0.0}
    concurrency = 1
    while concurrency <= 256:
        run = load(target, Scenario("non-stream", concurrency, 0), settings, duration=settings.step)
        p99 = run["latency_ms"]["p99"]
        steps.append({"concurrency": concurrency, "rps": run["rps"], "p99_ms": p99, "errors": run["errors"]})
        if p99 > p99_limit_ms or run["errors"] + run["status_errors"]:
            break
        if run["rps"] > best["rps"]:
            best = {"rps": run["rps"], "concurrency": concurrency, "p99_ms": p99}
        concurrency *= 2
    print(
        f"  {target.name:<9} capacity with p99 <= {p99_limit_ms:.0f} ms: {best['rps']:.0f} req/s "
        f"(concurrency {best['concurrency']}, p99 {best['p99_ms']:.1f} ms)",
        flush=True,
    )
    return {"p99_limit_ms": p99_limit_ms, **best, "steps": steps}


def soak(target: Target, requests: int, concurrency: int, interval: float) -> dict[str, Any]:
    """Steady closed-loop load for `requests` requests while sampling every service's RSS."""
    assert target.meter is not None
    cmd = [sys.executable, "-m", "bench.loadgen", "--url", target.chat_url, "--body"]
    cmd += [body(target.model[0], False).decode(), "--concurrency", str(concurrency), "--requests", str(requests)]
    cmd += ["--engine", "python"]
    samples: list[tuple[float, dict[str, float]]] = []
    started = time.monotonic()
    with subprocess.Popen(
        cmd, env={**os.environ, AUTH_ENV: target.auth}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT
    ) as proc:
        while proc.poll() is None:
            samples.append((time.monotonic() - started, target.meter.rss_mb()))
            time.sleep(interval)
        out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed during the soak: {err.decode()[-2000:]}")
    samples.append((time.monotonic() - started, target.meter.rss_mb()))
    rss = growth(samples)
    return {
        "requests": requests,
        "concurrency": concurrency,
        "load": orjson.loads(out),
        "rss_mb": rss,
        "samples": [{"t": t, "rss_mb": row} for t, row in samples],
    }


def profile_under_load(
    target: Target, settings: Settings, seconds: float, mode: str, log_dir: Path, concurrency: int = 64
) -> dict[str, Any]:
    """Load on the 0 ms upstream (concurrency 64 unless told) while py-spy samples every service."""
    assert target.meter is not None
    scenario = Scenario(mode, concurrency, 0)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(load, target, scenario, settings, seconds + 2)
        time.sleep(1)
        profiles = record(target.meter.roots, seconds, log_dir / "profile")
        run = running.result()
    text = [f"py-spy, {scenario.name}, {seconds:.0f}s: {run['rps']:.0f} req/s, p50 {run['latency_ms']['p50']:.2f} ms"]
    for name, prof in profiles.items():
        text += [f"\n{name} ({prof.total} samples)", prof.summary(15)]
    return {
        "scenario": scenario.name,
        "load": run,
        "top": {
            name: {"self": p.own.most_common(30), "inclusive": p.inclusive.most_common(30)}
            for name, p in profiles.items()
        },
        "text": "\n".join(text),
    }


# -- the command ---------------------------------------------------------------------------------------------


IDLE_SECONDS = 10.0


def idle_cpu(target: Target, seconds: float, settle: float = 2.0) -> dict[str, float]:
    """CPU of every service, as % of one core, while nobody sends anything (after the load, as in production)."""
    assert target.meter is not None
    print(f"idle: {seconds:.0f} s without traffic …", flush=True)
    time.sleep(settle)
    before = target.meter.cpu()
    time.sleep(seconds)
    after = target.meter.cpu()
    return {name: (after[name] - before.get(name, 0.0)) / seconds * 100 for name in after}


def ensure_wrk() -> bool:
    """wrk from the system packages, installed when missing and possible; otherwise the python engine."""
    if wrk_available():
        return True
    apt = shutil.which("apt-get")
    if apt and os.geteuid() == 0:
        print("installing wrk (apt-get) …", flush=True)
        subprocess.run([apt, "update", "-qq"], check=False, capture_output=True)
        subprocess.run([apt, "install", "-y", "-qq", "wrk"], check=False, capture_output=True)
    if wrk_available():
        return True
    print("bench: wrk is not available; non-stream load uses the python engine", file=sys.stderr)
    return False


def machine() -> dict[str, Any]:
    cpu = ""
    with suppress(OSError):
        cpu = next(
            (
                ln.split(":", 1)[1].strip()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if "model name" in ln
            ),
            "",
        )
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": commit.stdout.strip(),
        "memory_mb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20,
    }


@dataclass
class Report:
    started: str
    settings: dict[str, Any]
    machine: dict[str, Any] = field(default_factory=machine)
    scenarios: list[dict[str, Any]] = field(default_factory=list)
    rss_mb: dict[str, dict[str, float]] = field(default_factory=dict)
    idle_cpu_pct: dict[str, dict[str, float]] = field(default_factory=dict)  # % of one core, no traffic
    capacity: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # target: which scenarios it did not run, and why
    soak: dict[str, Any] | None = None
    profile: dict[str, Any] | None = None

    def write(self, stamp: str) -> Path:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{stamp}.json"
        path.write_bytes(orjson.dumps(self.__dict__, option=orjson.OPT_INDENT_2))
        return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run (default 10)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per model and mode")
    parser.add_argument("--quick", action="store_true", help="2-second runs, 1-second warm-ups")
    parser.add_argument("--litellm", action="store_true", help="also run LiteLLM proxy; print ratios")
    parser.add_argument(
        "--portkey", action="store_true", help="also run Portkey's gateway (make bench-peers installs it)"
    )
    parser.add_argument("--peers", action="store_true", help="also run LiteLLM proxy and Portkey's gateway")
    parser.add_argument(
        "--suite",
        choices=("prod", "embedded"),
        default="prod",
        help="embedded: the embedded profile (SQLite, no Redis, one gateway worker) first, then the production "
        f"one, with concurrency {EMBEDDED_EXTRA} added to the scenarios",
    )
    parser.add_argument("--soak", type=int, default=0, metavar="N", help="soak: N requests at steady load")
    parser.add_argument("--soak-concurrency", type=int, default=16)
    parser.add_argument("--profile", type=float, default=0.0, metavar="S", help="py-spy every service for S s")
    parser.add_argument("--profile-mode", choices=MODES, default="non-stream")
    parser.add_argument("--profile-concurrency", type=int, default=64, help="concurrency of the load --profile samples")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="gateway / LiteLLM workers")
    parser.add_argument("--engine", choices=("auto", "wrk", "python"), default="auto", help="non-stream load")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = 2.0, 1.0
    engine = args.engine
    if engine == "auto":
        engine = "wrk" if ensure_wrk() else "python"

    suites = ["embedded", "prod"] if args.suite == "embedded" else ["prod"]
    peers = [name for name in ("litellm", "portkey") if args.peers or getattr(args, name)]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    log_dir = RESULTS / f"{stamp}-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    concurrencies = tuple(sorted({*CONCURRENCIES, EMBEDDED_EXTRA})) if args.suite == "embedded" else CONCURRENCIES
    settings = Settings(
        args.duration, args.warmup, engine, args.workers, log_dir, min(5.0, args.duration), concurrencies
    )
    result = Report(
        started=datetime.now(UTC).isoformat(timespec="seconds"),
        settings={
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "engine_non_stream": engine,
            "engine_stream": "python",
            "workers": args.workers,
            "upstream_chunks": 8,
            "upstream_chunk_gap_ms": 0,
            "soak_requests": args.soak,
            "suites": suites,
            "peers": peers,
            "concurrencies": list(concurrencies),
        },
    )

    with ExitStack() as stack:
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tollgate-bench-")))
        upstream_urls = stack.enter_context(upstreams(log_dir))
        direct = direct_target(upstream_urls)
        warmed = False
        for profile in suites:
            with tollgate(data_dir / profile, upstream_urls, settings, profile) as (_, target):
                check(target, stream=False)
                check(target, stream=True)
                if args.profile:
                    warm_up(target, settings)
                    result.profile = profile_under_load(
                        target, settings, args.profile, args.profile_mode, log_dir, args.profile_concurrency
                    )
                    break
                if args.soak:
                    print(f"soak: {args.soak} requests at concurrency {args.soak_concurrency} …", flush=True)
                    warm_up(target, settings)
                    result.soak = soak(target, args.soak, args.soak_concurrency, interval=1.0)
                    result.rss_mb[target.name] = result.soak["samples"][-1]["rss_mb"]
                    break
                print("warming up …", flush=True)
                if not warmed:
                    for upstream in direct.values():
                        warm_up(upstream, settings)
                    warmed = True
                warm_up(target, settings)
                run_scenarios(target, direct, settings, result.scenarios)
                result.capacity[target.name] = capacity(target, settings)
                assert target.meter is not None
                result.rss_mb[target.name] = target.meter.rss_mb()
                result.idle_cpu_pct[target.name] = idle_cpu(target, IDLE_SECONDS)
        if not (args.soak or args.profile):
            for name in peers:
                peer = stack.enter_context(start_peer(name, upstream_urls, args.workers, log_dir))
                check(peer, stream=False)
                modes: tuple[str, ...] = MODES
                problem = refusal(peer, stream=True)
                if problem is not None:
                    # A peer that cannot relay a stream still has its non-stream figures; the table says why.
                    print(f"bench: {problem}; its stream scenarios are skipped", file=sys.stderr, flush=True)
                    result.skipped[name] = f"stream: {problem}"
                    modes = ("non-stream",)
                warm_up(peer, settings, modes)
                run_scenarios(peer, direct, settings, result.scenarios, modes)
                result.capacity[peer.name] = capacity(peer, settings)
                assert peer.meter is not None
                result.rss_mb[peer.name] = peer.meter.rss_mb()

    path = result.write(stamp)
    print()
    if result.soak is not None:
        print(report.soak_summary(result.soak))
    elif result.profile is not None:
        print(result.profile["text"])
    else:
        print(report.scenario_table(result.scenarios, "tollgate"))
        for other in [*suites[:-1], *peers]:
            print(f"\n{report.TITLES[other]}, same scenarios:")
            print(report.scenario_table(result.scenarios, other))
        for other in [*suites[:-1], *peers]:
            title, short = report.TITLES[other], report.ABBREV[other]
            print(f"\ntollgate (tg) beside {title} ({short}); ratios above 1x favour tollgate:")
            print(report.comparison_table(result.scenarios, "tollgate", other))
        for name, why in result.skipped.items():
            print(f"\n{report.TITLES.get(name, name)}: skipped {why}")
        print()
        print(report.capacity_summary(result.capacity))
    print()
    print(report.rss_table(result.rss_mb))
    if result.idle_cpu_pct:
        print(report.idle_table(result.idle_cpu_pct))
    print(f"\nresults: {path.relative_to(ROOT)}  logs: {log_dir.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
