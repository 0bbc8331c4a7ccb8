"""`make faults`: the suite's faults, survived and measured; one row of figures per case, and a table.

Every case runs bounded closed-loop load on loopback (`--concurrency` clients, half of them streaming)
against the suite as real processes, makes its fault, and counts: requests, errors by type, answers charged
twice, delivered answers left unpaid, holds still pending once their requests' deadlines (plus the margin)
have passed, seconds to full service after the restart, error lines in the services' logs, and whether
`tollgate credits reconcile` passes. A case fails when a client got something other than a whole answer
or an OpenAI-shaped error (a hang, a bare 5xx page, a stream cut without an error event while the gateway
was up), when anything was charged twice or left unpaid, a hold was left, or reconcile found a breach.

    python -m bench.faults                          # every case (about five minutes)
    python -m bench.faults --case kill-credits      # one case (repeatable option)
    python -m bench.faults --quick                  # shorter phases

The embedded suite (SQLite) serves the kill -9 and provider cases; PostgreSQL and Redis are restarted in a
cluster and a server of their own (never the machine's), with the suite in its production profile.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import func, select

from bench.run import provision
from services.credits.schema import holds, journal
from services.launcher import ROOT, Ports, Suite, free_port, production_env
from services.runtime.db import create_engine

CATALOG = Path(__file__).resolve().with_name("faults.yaml")
SERVICES = ("gateway", "router", "credits", "keyvault", "health")
# Short deadlines so that the holds of requests a crash cut off expire within the case.
REQUEST_TIMEOUT = 15
HOLD_MARGIN = 3
SUITE_ENV = {
    "TOLLGATE_CATALOG": str(CATALOG),
    "TOLLGATE_LOG_LEVEL": "INFO",
    "TOLLGATE_REQUEST_TIMEOUT": str(REQUEST_TIMEOUT),
    "TOLLGATE_REQUEST_TIMEOUT_SECONDS": str(REQUEST_TIMEOUT),
    "TOLLGATE_HOLD_TTL_MARGIN_SECONDS": str(HOLD_MARGIN),
    "TOLLGATE_CREDITS_SWEEP_INTERVAL_SECONDS": "1",
    "TOLLGATE_SETTLE_RETRY_MAX_SECONDS": "1",
}
# Streams take a moment, so that a fault finds some in flight.
UPSTREAM_ARGS = ("--chunk-gap-ms", "30")
# Errors a client may see while the gateway itself is down: there is nobody to answer in OpenAI's shape.
GATEWAY_DOWN = {"connect refused", "connection cut", "stream cut"}
CLIENT_TIMEOUT = REQUEST_TIMEOUT + 10.0


@dataclass(frozen=True, slots=True)
class Outcome:
    start: float
    end: float
    stream: bool
    request_id: str
    result: str  # "ok", or what went wrong as the client saw it
    delivered: bool  # the whole answer arrived (a non-stream 200, or a stream that reached [DONE])


@dataclass
class Figures:
    case: str
    requests: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    charged_twice: int = 0
    unpaid: int = 0
    holds_left: int = 0
    recovery_s: float | None = None  # from the restart to full service
    ready_s: float | None = None  # from the restart to the restarted part reporting ready
    log_errors: int = 0
    reconcile_ok: bool = True
    notes: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def line(self) -> str:
        errors = ", ".join(f"{k} {v}" for k, v in self.errors.most_common()) or "none"
        rec = f"{self.recovery_s:.1f}s" if self.recovery_s is not None else "-"
        ready = f"{self.ready_s:.1f}s" if self.ready_s is not None else "-"
        return (
            f"{self.case}: {self.requests} requests, errors: {errors}; charged twice {self.charged_twice}, "
            f"unpaid {self.unpaid}, holds left {self.holds_left}, ready {ready}, recovery {rec}, error log lines "
            f"{self.log_errors}, reconcile {'ok' if self.reconcile_ok else 'FAILED'}"
            + (f"; {'; '.join(self.notes)}" if self.notes else "")
            + (f" -- VIOLATIONS: {'; '.join(self.violations)}" if self.violations else "")
        )


class Load:
    """`concurrency` clients in a closed loop until stopped, half streaming, each request recorded."""

    def __init__(
        self, base_url: str, key: str, concurrency: int, model: str = "echo-paid", hang_up: bool = False
    ) -> None:
        self.hang_up = hang_up  # every client streams and goes away after the first chunk
        self.base_url = base_url
        self.key = key
        self.concurrency = concurrency
        self.model = model
        self.outcomes: list[Outcome] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._client(self.hang_up or i % 2 == 1)) for i in range(self.concurrency)]

    async def stop(self) -> list[Outcome]:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        return self.outcomes

    async def _client(self, stream: bool) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=CLIENT_TIMEOUT) as http:
            while not self._stop.is_set():
                outcome = await request(http, self.key, self.model, stream, self.hang_up)
                self.outcomes.append(outcome)
                if outcome.result != "ok":
                    await asyncio.sleep(0.05)  # a failing suite is not hammered in a tight loop


async def request(http: httpx.AsyncClient, key: str, model: str, stream: bool, hang_up: bool = False) -> Outcome:
    """One chat completion, classified as the client saw it (`hang_up`: leave after the first chunk)."""
    rid = "fault-" + uuid.uuid4().hex
    body = {"model": model, "messages": [{"role": "user", "content": f"hello from {rid}"}], "stream": stream}
    headers = {"Authorization": f"Bearer {key}", "X-Request-Id": rid}
    start = time.monotonic()
    result, delivered = "ok", False
    try:
        if stream:
            async with http.stream("POST", "/chat/completions", json=body, headers=headers) as reply:
                if reply.status_code != 200:
                    result = _refusal(reply.status_code, await reply.aread())
                else:
                    done, error = False, ""
                    async for line in reply.aiter_lines():
                        if not line.startswith("data: "):
                            continue
                        data = line[6:]
                        if hang_up:
                            break
                        if data == "[DONE]":
                            done = True
                            continue
                        obj = orjson.loads(data)
                        if "error" in obj:
                            error = (obj["error"] or {}).get("code") or "unknown"
                    result = f"stream {error}" if error else ("ok" if done or hang_up else "stream cut")
                    delivered = done and not error
        else:
            reply = await http.post("/chat/completions", json=body, headers=headers)
            result = _refusal(reply.status_code, reply.content) if reply.status_code != 200 else "ok"
            delivered = result == "ok"
    except httpx.TimeoutException:
        result = "hang"
    except httpx.ConnectError:
        result = "connect refused"
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
        result = "connection cut"
    return Outcome(start, time.monotonic(), stream, rid, result, delivered)


def _refusal(status: int, content: bytes) -> str:
    """`503 service_unavailable` for an OpenAI-shaped error; `503 bare` for anything else."""
    try:
        code = orjson.loads(content)["error"]["code"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return f"{status} bare"
    return f"{status} {code}"


def recovery(outcomes: list[Outcome], restarted: float) -> float | None:
    """Seconds from the restart to the first request after which every request succeeded (None: never)."""
    after = sorted((o for o in outcomes if o.start >= restarted), key=lambda o: o.start)
    if not after or after[-1].result != "ok":
        return None
    since = after[-1].start
    for o in reversed(after):
        if o.result != "ok":
            break
        since = o.start
    return max(0.0, since - restarted)


class Ledger:
    """The credits database, read directly (as `tollgate credits reconcile` does)."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def _read(self, query: Any) -> list[Any]:
        engine = create_engine(self.url, pool_size=1)
        try:
            async with engine.connect() as conn:
                return list((await conn.execute(query)).all())
        finally:
            await engine.dispose()

    async def settles(self, request_ids: list[str]) -> Counter[str]:
        """How many settle rows each of these requests has in the journal."""
        found: Counter[str] = Counter()
        for i in range(0, len(request_ids), 500):
            chunk = request_ids[i : i + 500]
            rows = await self._read(
                select(journal.c.request_id, func.count())
                .where(journal.c.kind == "settle", journal.c.request_id.in_(chunk))
                .group_by(journal.c.request_id)
            )
            found.update({r[0]: int(r[1]) for r in rows})
        return found

    async def pending(self) -> int:
        return int((await self._read(select(func.count()).where(holds.c.status == "pending")))[0][0])

    async def journal_ids(self) -> set[int]:
        return {int(r[0]) for r in await self._read(select(journal.c.id))}


def reconcile(url: str) -> bool:
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "credits", "reconcile", "--database-url", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    return done.returncode == 0


class Logs:
    """Error lines the services wrote since `mark()`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.offsets: dict[Path, int] = {}

    def mark(self) -> None:
        self.offsets = {p: p.stat().st_size for p in self.folder.glob("*.log")}

    def errors(self) -> list[str]:
        found = []
        for path in self.folder.glob("*.log"):
            with path.open("rb") as fh:
                fh.seek(self.offsets.get(path, 0))
                for raw in fh:
                    line = raw.decode(errors="replace")
                    if '"level":"error"' in line.lower() or line.startswith("Traceback"):
                        found.append(f"{path.stem}: {line.strip()[:300]}")
        return found


@dataclass
class Bench:
    """A running suite, its user key, its ledger and logs: what every case needs."""

    suite: Suite
    key: str
    ledger: Ledger
    logs: Logs
    concurrency: int
    phase: float  # seconds of load before the fault, and of the fault itself


async def run_case(
    bench: Bench,
    name: str,
    fault: Callable[[], Any],
    heal: Callable[[], Any] | None,
    *,
    ready: Callable[[], bool] | None = None,
    model: str = "echo-paid",
    allowed: Collection[str] = (),
    measure_recovery: bool = True,
    hang_up: bool = False,
) -> Figures:
    """Load, then `fault`, a pause, `heal` (the restart), load until recovered; then the ledger's figures."""
    figures = Figures(name)
    bench.logs.mark()
    load = Load(bench.suite.base_url, bench.key, bench.concurrency, model, hang_up)
    load.start()
    await asyncio.sleep(bench.phase)
    before = await bench.ledger.journal_ids() if name == "kill-credits" else set()
    await asyncio.to_thread(fault)
    restarted = time.monotonic()
    if heal is not None:
        await asyncio.sleep(bench.phase)
        restarted = time.monotonic()
        await asyncio.to_thread(heal)
        figures.ready_s = time.monotonic() - restarted
        if ready is not None:
            await asyncio.to_thread(_wait, ready, restarted + 60)
            figures.ready_s = time.monotonic() - restarted
    # Load goes on until every request has succeeded for a while (or a bound), so recovery is seen.
    bound = restarted + 20.0
    while time.monotonic() < bound:
        await asyncio.sleep(0.5)
        if not measure_recovery:
            if time.monotonic() > restarted + bench.phase:
                break
            continue
        rec = recovery(load.outcomes, restarted)
        if rec is not None and time.monotonic() - (restarted + rec) > 2.0:
            break
    outcomes = await load.stop()
    figures.requests = len(outcomes)
    figures.errors = Counter(o.result for o in outcomes if o.result != "ok")
    if measure_recovery:
        figures.recovery_s = recovery(outcomes, restarted)
        if figures.recovery_s is None:
            figures.violations.append("service did not recover")
    await _ledger_figures(bench, figures, outcomes)
    if before:
        lost = before - await bench.ledger.journal_ids()
        figures.notes.append(f"committed journal rows lost {len(lost)} of {len(before)}")
        if lost:
            figures.violations.append(f"{len(lost)} committed journal rows lost")
    errors = bench.logs.errors()
    figures.log_errors = len(errors)
    if hang_up and errors:
        figures.violations.append(f"clients going away wrote {len(errors)} error log lines: {errors[0]}")
    for label in figures.errors:
        shaped = label.split(" ", 1)[0].isdigit() and not label.endswith(" bare")
        if label.startswith("stream ") and label != "stream cut":
            shaped = True
        if not shaped and label not in allowed:
            figures.violations.append(f"clients got '{label}'")
    return figures


def _wait(ready: Callable[[], bool], until: float) -> None:
    while not ready() and time.monotonic() < until:
        time.sleep(0.05)


async def _ledger_figures(bench: Bench, figures: Figures, outcomes: list[Outcome]) -> None:
    """Charged twice, unpaid and holds left, once owed settles had time to land and dead holds to expire."""
    ids = [o.request_id for o in outcomes]
    delivered = {o.request_id for o in outcomes if o.delivered}
    deadline = time.monotonic() + REQUEST_TIMEOUT + HOLD_MARGIN + 10
    while True:
        settles = await bench.ledger.settles(ids)
        unpaid = [r for r in delivered if settles[r] == 0]
        pending = await bench.ledger.pending()
        if (not unpaid and not pending) or time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)
    figures.charged_twice = sum(1 for n in settles.values() if n > 1)
    figures.unpaid = len(unpaid)
    figures.holds_left = pending
    figures.reconcile_ok = await asyncio.to_thread(reconcile, bench.ledger.url)
    if figures.charged_twice:
        figures.violations.append(f"{figures.charged_twice} requests charged twice")
    if figures.unpaid:
        figures.violations.append(f"{figures.unpaid} delivered answers unpaid")
    if figures.holds_left:
        figures.violations.append(f"{figures.holds_left} holds left pending")
    if not figures.reconcile_ok:
        figures.violations.append("reconcile failed")


# the suites


@contextlib.contextmanager
def embedded(tmp: Path, concurrency: int, phase: float) -> Iterator[Bench]:
    suite = Suite(
        data_dir=tmp / "data",
        ports=Ports.free(),
        log_dir=tmp / "logs",
        env=dict(SUITE_ENV),
        upstream_args=UPSTREAM_ARGS,
    )
    suite.start()
    try:
        key = provision(suite)
        url = f"sqlite:///{suite.data_dir / 'credits.db'}"
        yield Bench(suite, key, Ledger(url), Logs(tmp / "logs"), concurrency, phase)
    finally:
        suite.stop()


class PrivatePostgres:
    """A PostgreSQL cluster of its own in a temporary folder, on a free port (initdb, pg_ctl; as the `postgres`
    user when run as root, which initdb refuses)."""

    def __init__(self) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        if not bins:
            raise SystemExit("faults: PostgreSQL binaries not found under /usr/lib/postgresql")
        self.bin = bins[-1]
        self.folder = Path(tempfile.mkdtemp(prefix="tollgate-faults-pg-"))
        self.data = self.folder / "pgdata"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.folder / "pg.log"),
            "-o",
            options,
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


class PrivateRedis:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                import socket

                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
            self.proc = None


@contextlib.contextmanager
def production(tmp: Path, concurrency: int, phase: float) -> Iterator[tuple[Bench, PrivatePostgres, PrivateRedis]]:
    pg, redis = PrivatePostgres(), PrivateRedis()
    pg.init()
    redis.start()
    try:
        with ThreadPoolExecutor(1) as pool:  # it runs its own event loop; this one is busy
            env = pool.submit(production_env, tmp / "data", pg.url, redis.url).result()
        suite = Suite(data_dir=tmp / "data", ports=Ports.free(), log_dir=tmp / "logs", env={**SUITE_ENV, **env})
        suite.start()
        try:
            key = provision(suite)
            bench = Bench(
                suite, key, Ledger(env["TOLLGATE_CREDITS_DATABASE_URL"]), Logs(tmp / "logs"), concurrency, phase
            )
            yield bench, pg, redis
        finally:
            suite.stop()
    finally:
        redis.stop()
        pg.remove()


# the cases

PROVIDER_CASES = {"provider-cut": "cuts-stream", "provider-hang": "hangs", "provider-garbage": "garbage"}
EMBEDDED_CASES = [f"kill-{name}" for name in SERVICES] + [*PROVIDER_CASES, "client-disconnect"]
PRODUCTION_CASES = ["postgres-restart", "redis-restart"]
ALL_CASES = EMBEDDED_CASES + PRODUCTION_CASES


async def embedded_case(bench: Bench, case: str) -> Figures:
    if case.startswith("kill-"):
        name, suite = case.removeprefix("kill-"), bench.suite
        return await run_case(
            bench,
            case,
            lambda: suite.kill(name),
            lambda: suite.restart(name),
            ready=lambda: suite.ready(name),
            allowed=GATEWAY_DOWN if name == "gateway" else (),
        )
    if case == "client-disconnect":
        return await run_case(bench, case, lambda: None, None, measure_recovery=False, hang_up=True)
    return await run_case(bench, case, lambda: None, None, model=PROVIDER_CASES[case], measure_recovery=False)


async def production_case(bench: Bench, pg: PrivatePostgres, redis: PrivateRedis, case: str) -> Figures:
    if case == "postgres-restart":
        return await run_case(bench, case, pg.stop, pg.start)
    return await run_case(bench, case, redis.stop, redis.start)


def table(rows: list[Figures]) -> str:
    columns = ["case", "requests", "errors by type", "charged twice", "unpaid", "holds left", "ready s"]
    columns += ["recovery s", "error log lines", "reconcile"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for f in rows:
        errors = ", ".join(f"{k}: {v}" for k, v in f.errors.most_common()) or "none"
        rec = f"{f.recovery_s:.1f}" if f.recovery_s is not None else "-"
        ready = f"{f.ready_s:.1f}" if f.ready_s is not None else "-"
        cells = [f.case, f.requests, errors, f.charged_twice, f.unpaid, f.holds_left, ready, rec, f.log_errors]
        lines.append("| " + " | ".join(map(str, [*cells, "ok" if f.reconcile_ok else "FAILED"])) + " |")
    return "\n".join(lines)


async def main_async(cases: list[str], concurrency: int, phase: float, keep: bool) -> list[Figures]:
    rows: list[Figures] = []
    tmp = Path(tempfile.mkdtemp(prefix="tollgate-faults-"))
    try:
        wanted = [c for c in cases if c in EMBEDDED_CASES]
        if wanted:
            with embedded(tmp / "embedded", concurrency, phase) as bench:
                for case in wanted:
                    rows.append(await embedded_case(bench, case))
                    print(rows[-1].line(), flush=True)
        wanted = [c for c in cases if c in PRODUCTION_CASES]
        if wanted:
            with production(tmp / "production", concurrency, phase) as (bench, pg, redis):
                for case in wanted:
                    rows.append(await production_case(bench, pg, redis, case))
                    print(rows[-1].line(), flush=True)
    finally:
        if keep:
            print(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", action="append", choices=ALL_CASES, help="run only this case (repeatable)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--phase", type=float, default=3.0, help="seconds of load before the fault, and of the fault")
    parser.add_argument("--quick", action="store_true", help="1-second phases")
    parser.add_argument("--keep", action="store_true", help="keep the suites' logs")
    args = parser.parse_args(argv)
    rows = asyncio.run(
        main_async(args.case or ALL_CASES, args.concurrency, 1.0 if args.quick else args.phase, args.keep)
    )
    print()
    print(table(rows))
    bad = [f for f in rows if not f.ok]
    for f in bad:
        print(f"FAILED {f.case}: {'; '.join(f.violations)}", file=sys.stderr)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
