"""The docs stay true: every setting, route and command is in the generated reference, with its description.

The reference pages are written from the code at every docs build (docgen/reference.py); these tests check
that nothing reaches them undocumented, that an undocumented addition is caught, that the README stays a
two-minute page, and that the site builds under `--strict` (broken links, anchors, pages outside the nav).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from starlette.responses import Response
from starlette.routing import Route

from deploy.drift import all_setting_names
from docgen import hooks, reference
from services.runtime.settings import CommonSettings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def test_every_setting_has_a_description() -> None:
    assert reference.missing_settings() == []


def test_every_setting_is_in_the_configuration_reference() -> None:
    page = reference.configuration_page()
    assert sorted(name for name in all_setting_names() if f"| `{name}` |" not in page) == []
    assert "| `TOLLGATE_CATALOG` | path | `catalog/demo.yaml` | router, health |" in page
    assert str(ROOT) not in page, "a default names this checkout's path"


def test_a_setting_added_without_a_docstring_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    class Added(CommonSettings):
        documented_knob: int = 1
        """What it does."""
        new_knob: int = 3  # a comment is not a description

    classes = reference._settings_classes()
    monkeypatch.setattr(reference, "_settings_classes", lambda: {**classes, "gateway": Added})
    assert reference.missing_settings() == ["TOLLGATE_NEW_KNOB"]
    assert "setting TOLLGATE_NEW_KNOB has no description" in reference.missing()


def test_every_route_has_an_openapi_summary_and_a_row() -> None:
    assert reference.missing_routes() == []
    page = reference.routes_page()
    served = reference.routes()
    assert len(served) > 40
    assert [f"{m} {p}" for m, p, _ in served if f"`{p}`" not in page] == []
    chat = "| `POST` | `/v1/chat/completions` | `/api/v1/llm/chat/completions` | key | Create a chat completion |"
    assert chat in page
    assert "| `GET` | `/health/ready` |  | none |" in page


def test_a_route_added_without_an_openapi_entry_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.gateway import app

    async def endpoint(request: object) -> Response:
        return Response()

    served = app.all_routes()
    monkeypatch.setattr(app, "all_routes", lambda: [*served, Route("/v1/undocumented", endpoint, methods=["POST"])])
    assert reference.missing_routes() == ["POST /v1/undocumented"]


def test_every_cli_command_has_help_and_a_section() -> None:
    assert reference.missing_commands() == []
    page = reference.cli_page()
    names = [name for name, _, _ in reference.commands()]
    assert {"tollgate credits reconcile", "tollgate vault rotate", "tollgate catalog check"} <= set(names)
    assert [name for name in names if f"`{name}`" not in re.findall(r"^#+ (`[^`]+`)$", page, re.M)] == []
    assert "usage: tollgate keys create" in page


def test_a_command_added_without_help_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.cli import __main__ as cli

    real = cli.parser

    def parser() -> argparse.ArgumentParser:
        root = real()
        groups = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction))
        groups.add_parser("widgets")
        return root

    monkeypatch.setattr(cli, "parser", parser)
    assert reference.missing_commands() == ["tollgate widgets"]


def test_the_build_stops_on_anything_undocumented(monkeypatch: pytest.MonkeyPatch) -> None:
    from mkdocs.exceptions import PluginError
    from mkdocs.structure.files import Files

    monkeypatch.setattr(reference, "missing", lambda: ["setting TOLLGATE_NEW_KNOB has no description"])
    with pytest.raises(PluginError, match="TOLLGATE_NEW_KNOB"):
        hooks.on_files(Files([]), config=None)


def test_the_reference_is_generated_not_committed() -> None:
    assert not (ROOT / "docs" / "reference").exists()


def test_the_readme_is_a_two_minute_page() -> None:
    text = README.read_text()
    assert len(text.encode()) < 8 * 1024
    assert "make run" in text and "make test" in text and "$TOLLGATE_KEY" in text
    links = re.findall(r"\]\(((?!https?:)[^)#]+)(?:#[^)]*)?\)", text)
    assert links, "the README links into the docs"
    assert [link for link in links if not (ROOT / link).is_file()] == []


def test_the_site_builds_strict(tmp_path: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for page in ("reference/configuration", "reference/routes", "reference/cli", "api/grpc", "concepts/credits"):
        assert (tmp_path / "site" / page / "index.html").is_file()
    assert "TOLLGATE_HEALTH_EJECT_MAX_PERCENT" in (tmp_path / "site/reference/configuration/index.html").read_text()
