"""``python -m services.demo_upstream``: run the demo upstream until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import Sequence

from services.demo_upstream.server import start_upstream


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    def env(name: str, default: str) -> str:
        return os.environ.get(f"TOLLGATE_DEMO_UPSTREAM_{name}", default)

    parser = argparse.ArgumentParser(prog="python -m services.demo_upstream", description=__doc__)
    parser.add_argument("--host", default=env("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env("PORT", "8090")), help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=float(env("LATENCY_MS", "0")))
    parser.add_argument("--chunks", type=int, default=int(env("CHUNKS", "8")))
    parser.add_argument("--chunk-gap-ms", type=float, default=float(env("CHUNK_GAP_MS", "0")))
    return parser.parse_args(argv)


async def serve(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    upstream = await start_upstream(args.host, args.port, args.latency_ms, args.chunks, args.chunk_gap_ms)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"demo upstream listening on http://{args.host}:{upstream.port}", flush=True)
    await stop.wait()
    await upstream.close()


def main() -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve())
    else:
        uvloop.run(serve())


if __name__ == "__main__":
    main()
