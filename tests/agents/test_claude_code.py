"""Claude Code (`@anthropic-ai/claude-code`, unchanged) through tollgate: `claude -p` with ANTHROPIC_BASE_URL at
the gateway and a tollgate key as ANTHROPIC_API_KEY, offline. The fake upstream scripts a Bash tool call, then
the final answer: the tool really runs, the answer is printed, and every call is charged exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.launcher import Suite
from tests.agents.conftest import AGENTS
from tests.e2e.support import balance_micro, bearer, cost_micro, create_key, start_suite

CATALOG = Path(__file__).with_name("catalog.yaml")
CLAUDE = AGENTS / "node_modules" / ".bin" / "claude"
PRICE = (0.01, 0.02)  # agent-fake's catalog price
MARKER = "tollgate-tool-ran"


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    running = start_suite(tmp_path_factory.mktemp("claude-code"), TOLLGATE_CATALOG=str(CATALOG))
    yield running
    running.stop()


def _usage(http: httpx.Client, key: str, count: int, wait: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + wait
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = http.get("/v1/usage", headers=bearer(key)).json()["data"]
        if len(rows) >= count and all(r["status"] != "pending" for r in rows):
            return rows
        time.sleep(0.1)
    raise AssertionError(f"expected {count} usage rows, got {rows}")


def test_claude_code_runs_a_tool_through_tollgate_and_is_charged_exactly(suite: Suite, tmp_path: Path) -> None:
    assert CLAUDE.exists(), "run `make test-agents` (it installs Claude Code into .cache/agents)"
    gateway = f"http://{suite.host}:{suite.ports.gateway}"
    key = create_key(suite, "claude-code-user")
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    with (
        httpx.Client(base_url=gateway, timeout=30) as http,
        httpx.Client(base_url=f"http://{suite.host}:{suite.ports.upstream}", timeout=10) as upstream,
    ):
        script = [
            {"tool_calls": [{"name": "Bash", "arguments": {"command": f"echo {MARKER} > marker.txt"}}]},
            {"content": "Done: the marker file is written."},
        ]
        assert upstream.post("/_control", json={"model": "demo-agent", "script": script}).status_code == 200
        before = balance_micro(http, key)
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(home),
            "ANTHROPIC_BASE_URL": gateway,
            "ANTHROPIC_API_KEY": key,
            "ANTHROPIC_MODEL": "claude-sonnet-4-5",
            "ANTHROPIC_DEFAULT_HAIKU_MODEL": "claude-haiku-4-5",
            "DISABLE_TELEMETRY": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
        }
        began = time.monotonic()
        run = subprocess.run(
            [str(CLAUDE), "-p", "Write the marker file.", "--allowedTools", "Bash", "--output-format", "json"],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        took = time.monotonic() - began
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        result = json.loads(run.stdout)
        assert result["is_error"] is False and "marker file is written" in result["result"], result
        assert (work / "marker.txt").read_text().strip() == MARKER  # the tool ran, for real
        stats = upstream.get("/_stats").json()
        calls = sum(n for route, n in stats["requests"].items() if route.endswith(" demo-agent"))
        sent = stats["last_bodies"]["demo-agent"]
        # The last call carried the tool's result back as a tool message answering the scripted call.
        assert [m["role"] for m in sent["messages"]][-2:] == ["assistant", "tool"]
        assert sent["messages"][-1]["tool_call_id"] == sent["messages"][-2]["tool_calls"][0]["id"]
        assert len(sent["tools"]) > 5 and all(t["type"] == "function" for t in sent["tools"])
        rows = _usage(http, key, calls)
        assert len(rows) == calls >= 2
        for row in rows:
            assert row["status"] == "ok"
            assert int(row["cost_micro"]) == cost_micro(
                int(row["prompt_tokens"]), int(row["completion_tokens"]), *PRICE
            )
        assert before - balance_micro(http, key) == sum(int(r["cost_micro"]) for r in rows) > 0
    print(f"claude -p took {took:.1f} s over {calls} calls")
