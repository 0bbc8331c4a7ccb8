"""Portkey's open-source gateway (npm `@portkey-ai/gateway`, Node) as the benchmark's second peer.

`make bench-peers` installs the pinned release into `.cache/peers` (git-ignored) on first use, as `make
test-agents` installs the agent CLIs. The gateway keeps no keys, no ledger and no catalog: every request names
its provider and upstream in headers (`x-portkey-provider: openai`, `x-portkey-custom-host: <base URL>`, its
README's "custom host"), and the `Authorization` header goes through to the upstream as the provider key. So
the benchmark sends the same body with the upstream's own model name (`demo-echo`) and, per upstream-latency
setting, the headers that point at that setting's demo upstream. It runs as one Node process (the package
starts no cluster of workers); `--headless` leaves its web console off.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / ".cache" / "peers" / "node_modules" / "@portkey-ai" / "gateway"
UPSTREAM_KEY = "sk-bench-upstream"
MODEL = "demo-echo"


def entry_point() -> Path:
    """The gateway's Node entry point, or a clear stop naming the make target that installs it."""
    script = PACKAGE / "build" / "start-server.js"
    if not script.exists():
        raise SystemExit("bench: Portkey's gateway is not installed; `make bench-peers` installs it into .cache/peers")
    return script


def version() -> str:
    try:
        return str(json.loads((PACKAGE / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "unknown"


def routing_headers(upstream_url: str) -> dict[str, str]:
    """The headers that send one request to `upstream_url` (an OpenAI-compatible base URL ending in /v1)."""
    return {"x-portkey-provider": "openai", "x-portkey-custom-host": upstream_url}


@dataclass
class PortkeyGateway:
    """A running Portkey gateway on `port`, one Node process in its own session."""

    port: int
    work_dir: Path
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self, timeout: float = 60.0) -> None:
        script = entry_point()
        node = shutil.which("node")
        if node is None:
            raise SystemExit("bench: Portkey's gateway needs Node (node on PATH)")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.work_dir / "portkey.log", "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [node, str(script), f"--port={self.port}", "--headless"],
            env={**os.environ, "NODE_ENV": "production"},
            cwd=self.work_dir,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"Portkey's gateway exited with {self.process.returncode} (see {self._log.name})")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"Portkey's gateway not ready after {timeout:.0f}s (see {self.work_dir})")
            time.sleep(0.2)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.port}/", timeout=1) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


def upstream_routes(upstreams: Mapping[int, str]) -> dict[int, dict[str, str]]:
    """Per upstream-latency setting, the headers that route to its demo upstream."""
    return {lat: routing_headers(url) for lat, url in upstreams.items()}
