"""The README stays true: it names every setting the services read and every route the gateway serves."""

from __future__ import annotations

import re
from pathlib import Path

from deploy.drift import all_setting_names
from services.gateway.app import all_routes

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def _mentioned(name: str) -> bool:
    return name in README


def test_every_setting_is_documented() -> None:
    missing = sorted(name for name in all_setting_names() if not _mentioned(name))
    assert missing == []


def test_every_route_is_documented() -> None:
    documented = set(re.findall(r"`(?:GET|POST|DELETE|PUT|PATCH) (/[^`\s]*)`", README))
    documented |= set(re.findall(r"\(`(/api/v1/[^`]*)`\)", README)) | set(re.findall(r"`(/api/v1/[^`]*)`", README))
    missing = []
    for route in all_routes():
        path = getattr(route, "path", "").replace("{model:path}", "{id}").replace("{model}", "{id}")
        alias = path.startswith("/api/v1/llm/") and ("/v1/" + path.removeprefix("/api/v1/llm/")) in documented
        if path not in documented and not alias:
            missing.append(path)
    assert missing == []
