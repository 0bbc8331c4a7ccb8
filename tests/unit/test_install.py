"""Installs come from the lock: a pyproject.toml that drifts from uv.lock stops `make install` with one line."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UV = ROOT / ".uv" / "bin" / "uv"


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    for name in ("Makefile", "pyproject.toml", "uv.lock", "requirements-uv.txt", "README.md"):
        shutil.copy2(ROOT / name, tmp_path / name)
    return tmp_path


def _install(checkout: Path) -> subprocess.CompletedProcess[str]:
    # The repository's bootstrapped uv is reused (and kept newer than requirements-uv.txt), so nothing is downloaded.
    return subprocess.run(
        ["make", "-s", "install", f"UV_HOME={ROOT / '.uv'}", f"VENV={checkout / '.venv'}"],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(not UV.exists(), reason="uv is bootstrapped by `make install`")
def test_a_dependency_added_without_relocking_stops_the_install(checkout: Path) -> None:
    pyproject = checkout / "pyproject.toml"
    added = '    "pyyaml>=6.0",\n    "six>=1.16",\n'
    pyproject.write_text(pyproject.read_text().replace('    "pyyaml>=6.0",\n', added))
    result = _install(checkout)
    assert result.returncode != 0
    assert "pyproject.toml and uv.lock disagree: run 'make lock' and commit uv.lock" in result.stderr
    assert not (checkout / ".venv" / ".installed").exists()


def test_every_install_path_reads_the_lock() -> None:
    dockerfile = (ROOT / "deploy" / "docker" / "Dockerfile").read_text()
    assert "uv sync --locked" in dockerfile
    assert "pip install -r requirements.txt" not in dockerfile and "pip install ." not in dockerfile
    makefile = (ROOT / "Makefile").read_text()
    assert "$(UV) sync --locked" in makefile
    assert "pip install -q -e" not in makefile
    assert (ROOT / "bench" / "litellm" / "uv.lock").exists()


def test_aider_has_a_lock_of_its_own_that_make_installs_and_relocks() -> None:
    makefile = (ROOT / "Makefile").read_text()
    project = ROOT / "tests" / "clients" / "aider"
    assert (project / "uv.lock").exists() and "aider-chat" in (project / "pyproject.toml").read_text()
    assert "AIDER_PROJECT := tests/clients/aider" in makefile
    recipes = {target: makefile.split(f"\n{target}:", 1)[1].split("\n\n", 1)[0] for target in ("lock", "upgrade")}
    assert "$(UV) lock --project $(AIDER_PROJECT)" in recipes["lock"]
    assert "$(UV) lock --upgrade --project $(AIDER_PROJECT)" in recipes["upgrade"]
    clients = makefile.split("\ntest-clients:", 1)[1].split("\n\n", 1)[0]
    assert "$(UV) sync --locked -q --python $(PYTHON) --project $(AIDER_PROJECT)" in clients
