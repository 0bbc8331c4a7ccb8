"""The docs' native gRPC example (docs/api/grpc.md) runs as pasted against the suite's router."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from services.launcher import Suite
from tests.e2e.support import create_key

pytestmark = pytest.mark.e2e

PAGE = (Path(__file__).resolve().parents[2] / "docs" / "api" / "grpc.md").read_text()


def test_the_native_grpc_example_answers_and_charges(suite: Suite) -> None:
    (program,) = [b for b in re.findall(r"```python\n(.*?)```", PAGE, flags=re.S) if "RouterStub" in b]
    program = program.replace("127.0.0.1:50051", f"{suite.host}:{suite.ports.router}").replace("demo-echo", "echo-paid")
    key = create_key(suite, "readme-grpc")
    result = subprocess.run(
        [sys.executable, "-c", program],
        env={**os.environ, "TOLLGATE_KEY": key},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    answer, charged = result.stdout.strip().splitlines()
    assert answer == "echo: hello over gRPC"
    assert re.fullmatch(r"charged [1-9]\d* micro-credits", charged), charged
