"""The load generator: closed-loop HTTP/1.1 load in its own process, one JSON summary on stdout.

Two engines. `wrk` (the system package, driven by a generated Lua script) for non-stream requests: it is
C, so it stays far below the suite's cost per request. `python` is a lean asyncio client on raw sockets
(uvloop, keep-alive, TCP_NODELAY, one connection per unit of concurrency) that reads SSE streams event by
event to measure time to first token and the gaps between chunks, which wrk cannot see; it also serves
non-stream load when wrk is missing and fixed request counts (the soak). The runner proves either engine
is not the bottleneck by running the same load against the upstream alone.

The Authorization header comes from the `BENCH_AUTH` environment variable, never from the command line;
extra headers (a peer that routes by header) from `BENCH_HEADERS`, one `Name: value` a line.

    python -m bench.loadgen --url http://127.0.0.1:8080/v1/chat/completions --body '{...}' \\
        --concurrency 64 --duration 10 [--stream] [--engine wrk|python] [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

AUTH_ENV = "BENCH_AUTH"
HEADERS_ENV = "BENCH_HEADERS"

_WRK_SCRIPT = r"""
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("BENCH_AUTH")
if auth ~= nil and auth ~= "" then wrk.headers["Authorization"] = auth end
for line in string.gmatch(os.getenv("BENCH_HEADERS") or "", "[^\n]+") do
  local name, value = string.match(line, "^([^:]+):%s*(.*)$")
  if name ~= nil then wrk.headers[name] = value end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "errors": %d, "status_errors": %d, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "mean": %.1f, "max": %d}}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
"""


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p90/p99/mean/max of `values` (nearest rank); zeros when there are none."""
    if not values:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "mean": 0.0, "max": 0.0}
    ordered = sorted(values)
    n = len(ordered)

    def rank(p: float) -> float:
        return ordered[min(n - 1, max(0, int(-(-p * n // 100)) - 1))]

    return {"p50": rank(50), "p90": rank(90), "p99": rank(99), "mean": sum(ordered) / n, "max": ordered[-1]}


@dataclass
class Tally:
    """What the python engine observed: one latency per request, and for streams TTFT and chunk gaps."""

    latencies_ms: list[float] = field(default_factory=list)
    ttft_ms: list[float] = field(default_factory=list)
    gaps_ms: list[float] = field(default_factory=list)
    chunks: int = 0
    errors: int = 0
    status_errors: int = 0

    def summary(self, engine: str, elapsed: float) -> dict[str, Any]:
        done = len(self.latencies_ms)
        return {
            "engine": engine,
            "requests": done,
            "errors": self.errors,
            "status_errors": self.status_errors,
            "duration_s": elapsed,
            "rps": done / elapsed if elapsed > 0 else 0.0,
            "latency_ms": percentiles(self.latencies_ms),
            "ttft_ms": percentiles(self.ttft_ms),
            "gap_ms": percentiles(self.gaps_ms),
            "chunks_per_request": self.chunks / done if done else 0.0,
        }


class ProtocolError(Exception):
    pass


def parse_headers(text: str) -> dict[str, str]:
    """`Name: value` lines (BENCH_HEADERS) as a mapping; blank or malformed lines are skipped."""
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {name.strip(): value.strip() for name, value in pairs if name.strip()}


def format_headers(headers: dict[str, str]) -> str:
    return "".join(f"{name}: {value}\n" for name, value in headers.items())


def request_bytes(url: str, body: bytes, auth: str, extra: dict[str, str] | None = None) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = [
        f"POST {parts.path or '/'} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        "Accept: */*",
        f"Content-Length: {len(body)}",
    ]
    if auth:
        head.append(f"Authorization: {auth}")
    head += [f"{name}: {value}" for name, value in (extra or {}).items()]
    return host, port, ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader, started: float, tally: Tally, stream: bool) -> bool:
    """Read one response; record stream events. Returns whether the connection stays usable."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, _, rest = head.partition(b"\r\n")
    status = int(status_line.split(b" ", 2)[1])
    headers = {}
    for line in rest.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().lower()] = value.strip().lower()
    keep = headers.get(b"connection") != b"close"
    if status >= 400:
        tally.status_errors += 1
    events: list[float] = []
    if headers.get(b"transfer-encoding") == b"chunked":
        pending = b""
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";", 1)[0], 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            if stream:
                now = time.perf_counter()
                pending += data[:-2]
                *complete, pending = pending.split(b"\n\n")
                events.extend(now for event in complete if event.startswith(b"data:") and b"[DONE]" not in event)
    elif b"content-length" in headers:
        await reader.readexactly(int(headers[b"content-length"]))
    else:
        await reader.read()
        keep = False
    if stream and status < 400:
        if not events:
            raise ProtocolError("a stream ended without any data event")
        tally.ttft_ms.append((events[0] - started) * 1000)
        tally.gaps_ms.extend((b - a) * 1000 for a, b in itertools.pairwise(events))
        tally.chunks += len(events)
    return keep


async def _worker(
    host: str, port: int, payload: bytes, stream: bool, tally: Tally, stop_at: float, budget: list[int]
) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while time.perf_counter() < stop_at and budget[0] != 0:
        budget[0] -= 1
        try:
            if writer is None or reader is None:
                reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            started = time.perf_counter()
            writer.write(payload)
            keep = await _read_response(reader, started, tally, stream)
            tally.latencies_ms.append((time.perf_counter() - started) * 1000)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, ProtocolError):
            tally.errors += 1
            keep = False
            await asyncio.sleep(0.01)
        if not keep and writer is not None:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def run_python(
    url: str,
    body: bytes,
    auth: str,
    concurrency: int,
    duration: float,
    stream: bool,
    requests: int,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    host, port, payload = request_bytes(url, body, auth, headers)
    tally = Tally()
    budget = [requests if requests > 0 else -1]
    started = time.perf_counter()
    stop_at = started + (duration if requests <= 0 else 1e9)
    await asyncio.gather(*(_worker(host, port, payload, stream, tally, stop_at, budget) for _ in range(concurrency)))
    return tally.summary("python", time.perf_counter() - started)


def run_wrk(
    url: str, body: bytes, auth: str, concurrency: int, duration: float, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(_WRK_SCRIPT)
        env = {**os.environ, "BENCH_BODY": body.decode(), AUTH_ENV: auth, HEADERS_ENV: format_headers(headers or {})}
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{concurrency}",
                f"-d{max(1, round(duration))}s",
                "--timeout",
                "30s",
                "-s",
                str(script),
                url,
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("{"))
    raw = orjson.loads(line)
    elapsed = raw["duration_us"] / 1e6
    lat = {k: v / 1000 for k, v in raw["latency_us"].items()}
    return {
        "engine": "wrk",
        "requests": raw["requests"],
        "errors": raw["errors"],
        "status_errors": raw["status_errors"],
        "duration_s": elapsed,
        "rps": raw["requests"] / elapsed if elapsed > 0 else 0.0,
        "latency_ms": lat,
    }


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", required=True, help="the JSON request body")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds (ignored with --requests)")
    parser.add_argument("--requests", type=int, default=0, help="stop after this many requests (python engine)")
    parser.add_argument("--stream", action="store_true", help="read SSE: time to first token and chunk gaps")
    parser.add_argument("--engine", choices=("auto", "wrk", "python"), default="auto")
    args = parser.parse_args(argv)

    auth = os.environ.get(AUTH_ENV, "")
    headers = parse_headers(os.environ.get(HEADERS_ENV, ""))
    body = args.body.encode()
    engine = args.engine
    if engine == "auto":
        engine = "wrk" if wrk_available() and not args.stream and args.requests <= 0 else "python"
    if engine == "wrk":
        if args.stream or args.requests > 0:
            sys.exit("loadgen: wrk measures neither streams nor fixed request counts; use --engine python")
        result = run_wrk(args.url, body, auth, args.concurrency, args.duration, headers)
    else:
        try:
            import uvloop
        except ImportError:
            runner = asyncio.run
        else:
            runner = uvloop.run
        result = runner(
            run_python(args.url, body, auth, args.concurrency, args.duration, args.stream, args.requests, headers)
        )
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
