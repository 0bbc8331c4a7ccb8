"""aider (`aider-chat`, unchanged) through tollgate as an OpenAI-compatible endpoint, offline.

aider pins exact releases of openai and litellm, so it lives in a virtualenv of its own (.venv-aider, from
tests/clients/aider/uv.lock, installed by `make test-clients`) and is run here as the real CLI: one
non-interactive `--message` in a folder with one file. The demo upstream scripts the model's answer, a
SEARCH/REPLACE block: aider applies it to the file, and the user pays exactly the one chat completion.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.launcher import Suite
from tests.e2e.support import balance_micro, cost_micro, create_key, usage_rows, words

AIDER = Path(__file__).resolve().parents[2] / ".venv-aider" / "bin" / "aider"
MODEL = "echo-paid"
PRICE = (0.01, 0.02)  # echo-paid's catalog price (tests/e2e/catalog.yaml), per 1,000 tokens
BEFORE = 'def greet():\n    return "hello"\n'
AFTER = 'def greet():\n    return "hello from tollgate"\n'
EDIT = f"""I will change the greeting.

greet.py
```python
<<<<<<< SEARCH
{BEFORE}=======
{AFTER}>>>>>>> REPLACE
```
"""


def _text(content: object) -> str:
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return content if isinstance(content, str) else ""


class _DeadProxy:
    """A proxy on 127.0.0.1 that drops every connection at once (the client fails fast) and counts them."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.calls = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):  # closed
            while True:
                conn, _ = self.server.accept()
                self.calls += 1
                conn.close()

    def __enter__(self) -> _DeadProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)  # wakes the accept
        self.server.close()


def test_aider_edits_a_file_through_tollgate_and_is_charged_exactly(suite: Suite, script: Any, tmp_path: Path) -> None:
    if not AIDER.exists():
        pytest.fail(f"{AIDER} is missing: run this test through `make test-clients`, which installs it")
    key = create_key(suite, "aider-user")
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    (work / "greet.py").write_text(BEFORE)
    # What aider knows of the model (context window, prices), so that it looks nothing up.
    metadata = home / "model-metadata.json"
    metadata.write_text(
        json.dumps(
            {
                f"openai/{MODEL}": {
                    "max_input_tokens": 32000,
                    "max_output_tokens": 4096,
                    "input_cost_per_token": PRICE[0] / 1000,
                    "output_cost_per_token": PRICE[1] / 1000,
                    "litellm_provider": "openai",
                    "mode": "chat",
                }
            }
        )
    )
    # Offline: anything aider tries to reach beyond 127.0.0.1 goes through this proxy, which drops it.
    proxy = _DeadProxy()
    nowhere = f"http://127.0.0.1:{proxy.port}"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "TERM": "dumb",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
        "HTTP_PROXY": nowhere,
        "HTTPS_PROXY": nowhere,
        "ALL_PROXY": nowhere,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    command = [
        str(AIDER),
        "--model",
        f"openai/{MODEL}",
        "--openai-api-base",
        suite.base_url,
        "--openai-api-key",
        key,
        "--model-metadata-file",
        str(metadata),
        "--edit-format",
        "diff",
        "--message",
        "Make greet() say hello from tollgate.",
        "greet.py",
        "--yes-always",
        "--no-git",
        "--no-auto-commits",
        "--no-auto-lint",
        "--no-check-update",
        "--no-show-release-notes",
        "--analytics-disable",
        "--no-show-model-warnings",
        "--no-pretty",
        "--no-fancy-input",
        "--no-detect-urls",
        "--disable-playwright",
        "--map-tokens",
        "0",
    ]
    with (
        proxy,
        httpx.Client(base_url=f"http://{suite.host}:{suite.ports.gateway}", timeout=30) as gateway,
        httpx.Client(base_url=f"http://{suite.host}:{suite.ports.upstream}", timeout=10) as upstream,
    ):
        upstream.post("/_stats/reset").raise_for_status()
        script({"content": EDIT})
        before = balance_micro(gateway, key)
        began = time.monotonic()
        run = subprocess.run(
            command, cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180
        )
        took = time.monotonic() - began
        output = run.stdout[-4000:] + run.stderr[-4000:]
        assert run.returncode == 0, output
        # aider got the gateway's answer and applied the edit it carried.
        assert (work / "greet.py").read_text() == AFTER, output
        assert "Applied edit to greet.py" in run.stdout, output
        assert proxy.calls == 0, "aider reached for the network"

        stats = upstream.get("/_stats").json()
        calls = {route: n for route, n in stats["requests"].items() if route != "/v1/models -"}  # health probes
        assert calls == {"/v1/chat/completions demo-echo": 1}, stats
        sent = stats["last_bodies"]["demo-echo"]
        assert sent["stream"] is True  # aider streams by default
        assert any(BEFORE in _text(m["content"]) for m in sent["messages"])  # it sent the file along
        prompt_tokens = sum(words(_text(m["content"])) for m in sent["messages"])

        rows = usage_rows(gateway, key, 1)
        assert len(rows) == 1, rows
        row = rows[0]
        assert row["status"] == "ok" and row["model"] == MODEL, row
        assert (int(row["prompt_tokens"]), int(row["completion_tokens"])) == (prompt_tokens, words(EDIT)), row
        assert int(row["cost_micro"]) == cost_micro(prompt_tokens, words(EDIT), *PRICE) > 0
        assert before - balance_micro(gateway, key) == int(row["cost_micro"])
    print(f"aider took {took:.1f} s")
