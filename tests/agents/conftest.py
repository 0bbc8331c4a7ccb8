"""Real agent CLIs nobody here wrote, run through the suite offline: `make test-agents` (Node), not `make test`.

The CLIs are installed pinned into the git-ignored `.cache/agents` by that target; without
`TOLLGATE_AGENTS=1` (which it sets) these tests are not collected.
"""

from __future__ import annotations

import os
from pathlib import Path

AGENTS = Path(__file__).resolve().parents[2] / ".cache" / "agents"

collect_ignore_glob = [] if os.environ.get("TOLLGATE_AGENTS") == "1" else ["test_*.py"]
