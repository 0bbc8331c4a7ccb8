"""LiteLLM proxy as the benchmark's point of comparison: its own virtualenv, a generated config, one process tree.

The proxy is installed into `bench/.venv-litellm` (never into the project's environment) on first use, from
`bench/litellm/uv.lock` with the uv that `make` bootstrapped, so every run measures the same release. Its
config maps the same model names the tollgate catalog serves (`bench-0ms`, `bench-50ms`) onto the same demo
upstreams through LiteLLM's OpenAI-compatible provider, with a master key so that every request is
authenticated, and runs the same number of worker processes as the tollgate gateway.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import yaml

BENCH = Path(__file__).resolve().parent
VENV = BENCH / ".venv-litellm"
PROJECT = BENCH / "litellm"
UV = Path(os.environ.get("TOLLGATE_UV", BENCH.parent / ".uv" / "bin" / "uv"))
UPSTREAM_KEY = "sk-bench-upstream"


def executable() -> Path:
    return VENV / "bin" / "litellm"


def install() -> Path:
    """The proxy's executable, installing it into its own virtualenv when missing."""
    if not executable().exists():
        print(f"installing LiteLLM proxy from bench/litellm/uv.lock into bench/{VENV.name} …", flush=True)
        base = getattr(sys, "_base_executable", sys.executable)
        env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(VENV)}
        command = [str(UV), "sync", "--locked", "-q", "--python", base, "--project", str(PROJECT)]
        subprocess.run(command, check=True, env=env)
    return executable()


def config(upstreams: Mapping[str, str], master_key: str) -> dict[str, object]:
    """Proxy config: each model name served from its upstream (an OpenAI-compatible base URL)."""
    models = [
        {
            "model_name": name,
            "litellm_params": {"model": "openai/demo-echo", "api_base": url, "api_key": UPSTREAM_KEY},
        }
        for name, url in upstreams.items()
    ]
    return {
        "model_list": models,
        "litellm_settings": {"drop_params": True, "telemetry": False},
        "general_settings": {"master_key": master_key},
    }


@dataclass
class LiteLLMProxy:
    """A running LiteLLM proxy on `port` with `workers` worker processes."""

    upstreams: Mapping[str, str]
    port: int
    workers: int
    work_dir: Path
    host: str = "127.0.0.1"
    master_key: str = field(default_factory=lambda: "sk-bench-" + secrets.token_urlsafe(16))
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self, timeout: float = 180.0) -> None:
        binary = install()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        path = self.work_dir / "litellm-config.yaml"
        path.write_text(yaml.safe_dump(config(self.upstreams, self.master_key), sort_keys=False))
        env = {
            **os.environ,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
            "LITELLM_LOG": "ERROR",
            "LITELLM_TELEMETRY": "False",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("VIRTUAL_ENV", None)
        self._log = open(self.work_dir / "litellm.log", "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                str(binary),
                "--config",
                str(path),
                "--host",
                self.host,
                "--port",
                str(self.port),
                "--num_workers",
                str(self.workers),
            ],
            env=env,
            cwd=self.work_dir,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"LiteLLM proxy exited with {self.process.returncode} (see {self._log.name})")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"LiteLLM proxy not ready after {timeout:.0f}s (see {self.work_dir})")
            time.sleep(0.5)

    def _ready(self) -> bool:
        try:
            url = f"http://{self.host}:{self.port}/health/liveliness"
            with urllib.request.urlopen(url, timeout=1) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            # Its workers share its session: signal the whole group so none outlives the run.
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
