"""What the agent tests share: the CLIs `make test-agents` installs (pinned, from npm) into `.cache/agents`."""

from __future__ import annotations

from pathlib import Path

import pytest

AGENTS = Path(__file__).resolve().parents[2] / ".cache" / "agents"


def agent_binary(name: str) -> Path:
    """An agent CLI from `.cache/agents`; a clear failure when `make test-agents` has not installed it."""
    path = AGENTS / "node_modules" / ".bin" / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run these tests through `make test-agents`, which installs it")
    return path
