"""Codex CLI (`@openai/codex`, unmodified) through tollgate's Responses API, offline.

`codex exec` runs one prompt with a custom model provider whose `base_url` is the gateway and `wire_api` is
`responses`. The fake upstream scripts the model: first a call of Codex's own shell tool (`exec_command`),
then a final answer. The test checks that Codex ran the command and sent its output back, printed the
answer, and that the user paid exactly the two chat completions the turns became.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.launcher import Suite
from tests.agents.support import agent_binary
from tests.e2e.support import balance_micro, bearer, cost_micro, create_key, settled, start_suite

PAID = (0.01, 0.02)  # echo-paid's catalog price
MARKER = "codex-ran-42"
FINAL = "All done: the command printed the marker."
CONFIG = """\
model = "echo-paid"
model_provider = "tollgate"

[model_providers.tollgate]
name = "tollgate"
base_url = "{base_url}"
env_key = "TOLLGATE_API_KEY"
wire_api = "responses"
"""


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    running = start_suite(tmp_path_factory.mktemp("codex-suite"))
    yield running
    running.stop()


def test_codex_exec_runs_a_tool_through_tollgate_and_is_charged_exactly(suite: Suite, tmp_path: Path) -> None:
    codex = agent_binary("codex")
    with (
        httpx.Client(base_url=f"http://{suite.host}:{suite.ports.gateway}", timeout=30) as gateway,
        httpx.Client(base_url=f"http://{suite.host}:{suite.ports.upstream}", timeout=10) as upstream,
    ):
        _run_codex(codex, suite, gateway, upstream, tmp_path)


def _run_codex(codex: Path, suite: Suite, gateway: httpx.Client, upstream: httpx.Client, tmp_path: Path) -> None:
    key = create_key(suite, "codex-user")
    script: list[dict[str, Any]] = [
        {"tool_calls": [{"name": "exec_command", "arguments": {"cmd": "echo codex-ran-$(( 6 * 7 ))"}}]},
        {"content": FINAL},
    ]
    assert upstream.post("/_control", json={"model": "demo-echo", "script": script}).status_code == 200
    home, work = tmp_path / "codex-home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    (home / "config.toml").write_text(CONFIG.format(base_url=suite.base_url))
    before = balance_micro(gateway, key)

    run = subprocess.run(
        [
            str(codex),
            "exec",
            "--skip-git-repo-check",
            "--dangerously-bypass-approvals-and-sandbox",
            "run the marker command and tell me what it printed",
        ],
        cwd=work,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "CODEX_HOME": str(home), "TOLLGATE_API_KEY": key},
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert FINAL in run.stdout, output

    # The second turn carried the command's real output back to the model as a tool result.
    sent = upstream.get("/_stats").json()["last_bodies"]["demo-echo"]
    results = [m for m in sent["messages"] if m["role"] == "tool"]
    assert results and MARKER in results[-1]["content"], sent["messages"][-3:]
    assert upstream.get("/_stats").json()["requests"].get("/v1/chat/completions demo-echo") == 2

    settled(gateway, key)
    rows = gateway.get("/v1/usage", headers=bearer(key)).json()["data"]
    assert len(rows) == 2 and {r["status"] for r in rows} == {"ok"}
    for row in rows:
        assert row["cost_micro"] == cost_micro(row["prompt_tokens"], row["completion_tokens"], *PAID) > 0
    assert before - balance_micro(gateway, key) == sum(r["cost_micro"] for r in rows)
