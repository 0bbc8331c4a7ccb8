"""The README's quick start runs as pasted: its shell block (key export + curl) and its SDK example.

The blocks are taken from README.md itself, so an edit that breaks them breaks this test; the docs' getting
started page shows the same blocks, to the letter, so they run here too. Only the address
changes (the suite runs on free ports) and the working directory is the suite's, where `data/` lives. The
suite serves `make run`'s own demo catalog.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from services.launcher import Suite
from tests.e2e.support import start_suite

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
QUICK_START = README[README.index("## Quick start") : README.index("\n## ", README.index("## Quick start") + 5)]
GETTING_STARTED = (ROOT / "docs" / "getting-started.md").read_text()


def _block(language: str, containing: str, text: str = QUICK_START) -> str:
    for body in re.findall(rf"```{language}\n(.*?)```", text, flags=re.S):
        if containing in body:
            return str(body)
    raise AssertionError(f"no {language} block with {containing!r} in the README's quick start")


@pytest.mark.parametrize(("language", "containing"), [("sh", "curl"), ("python", "from openai import OpenAI")])
def test_the_docs_show_the_tested_blocks(language: str, containing: str) -> None:
    assert _block(language, containing, GETTING_STARTED) == _block(language, containing)


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    running = start_suite(tmp_path_factory.mktemp("readme"), TOLLGATE_CATALOG=str(ROOT / "catalog" / "demo.yaml"))
    yield running
    running.stop()


def _here(suite: Suite, text: str) -> str:
    return text.replace("http://127.0.0.1:8080", f"http://{suite.host}:{suite.ports.gateway}")


def test_the_curl_example_answers_with_the_printed_key(suite: Suite) -> None:
    script = _here(suite, _block("sh", "curl"))
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=suite.data_dir.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    answer = orjson.loads(result.stdout)
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["content"]


def test_the_sdk_example_streams_with_the_newest_sdk(suite: Suite) -> None:
    program = _here(suite, _block("python", "from openai import OpenAI"))
    result = subprocess.run(
        [sys.executable, "-c", program],
        env={**os.environ, "TOLLGATE_KEY": suite.bootstrap_keys()["demo_key"]},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"\n\d+ tokens\n$", result.stdout), result.stdout
