"""The reference pages of the docs, written from the code so they cannot drift from it.

- configuration: every setting of every service's settings class (its attribute docstring is its description),
  plus the few names only `make run` reads;
- routes: every route the gateway serves, with its summary from the OpenAPI document;
- CLI: every `tollgate` command with the help argparse prints for it.

Each page has a `missing_*` twin that lists what is not documented (a setting without a docstring, a route
without a summary, a command without help); the tests and the docs build fail on any.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Iterator
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

from deploy.drift import SERVICES, _env_name, launcher_names, settings_class

ROOT = Path(__file__).resolve().parents[1]

# Names only the launcher (`make run`) reads, not a field of any settings class.
LAUNCHER_ONLY = {
    "TOLLGATE_POSTGRES_URL": "`make run PROFILE=prod` only: the local PostgreSQL server where it creates one "
    "database per service (default `postgresql://postgres@127.0.0.1:5432/postgres`).",
}
SECTIONS = {
    "common": "Every service and the `tollgate` CLI",
    "edge": "The gateway and the router (callers' own API keys)",
    "gateway": "gateway",
    "router": "router",
    "credits": "credits",
    "keyvault": "keyvault",
    "health": "health",
    "cli": "The `tollgate` CLI",
    "launcher": "`make run` (the launcher)",
}


# --- settings -------------------------------------------------------------------------------------------------


def _settings_classes() -> dict[str, type[Any]]:
    from services.cli.common import OperatorSettings

    return {**{service: settings_class(service) for service in SERVICES}, "cli": OperatorSettings}


def _section(cls: type[Any], name: str) -> str:
    """Which class of the hierarchy declares `name`: the shared ones get a section of their own."""
    from services.runtime.settings import CommonSettings, EdgeSettings

    for base in cls.__mro__:
        if name in vars(base).get("__annotations__", {}):
            if base is CommonSettings:
                return "common"
            if base is EdgeSettings:
                return "edge"
            break
    return ""


def _default(value: Any) -> str:
    if isinstance(value, Path):
        path = value.resolve() if value.is_absolute() else value
        return f"`{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}`"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, Decimal):
        value = format(value, "f")
    if value in ("", None):
        return "empty"
    return f"`{value}`"


def _type(field: FieldInfo) -> str:
    kind = field.annotation
    return getattr(kind, "__name__", str(kind)).replace("Mode", "str").replace("Decimal", "decimal").lower()


def _one_line(text: str | None) -> str:
    return re.sub(r"\s+", " ", text or "").strip().replace("|", "\\|")


def settings() -> dict[str, dict[str, Any]]:
    """Every setting by environment variable: section, type, default, description, and who reads it."""
    found: dict[str, dict[str, Any]] = {}
    for reader, cls in _settings_classes().items():
        for name, field in cls.model_fields.items():
            env = _env_name(cls.model_config.get("env_prefix", ""), name, field)
            entry = found.setdefault(
                env,
                {
                    "section": _section(cls, name) or reader,
                    "type": _type(field),
                    "default": _default(field.default),
                    "description": _one_line(field.description),
                    "readers": [],
                },
            )
            entry["readers"].append(reader)
    for env in sorted(launcher_names()):
        entry = found.setdefault(
            env,
            {
                "section": "launcher",
                "type": "str",
                "default": "",
                "description": LAUNCHER_ONLY.get(env, ""),
                "readers": [],
            },
        )
        entry["readers"].append("make run")
    return found


def missing_settings() -> list[str]:
    """Settings without a description: an attribute docstring under the field (or a LAUNCHER_ONLY entry)."""
    return sorted(env for env, entry in settings().items() if not entry["description"])


def _readers(readers: list[str]) -> str:
    services = [r for r in readers if r in SERVICES]
    named = "all services" if len(services) == len(SERVICES) else ", ".join(services)
    others = [r for r in readers if r not in SERVICES]
    return ", ".join(part for part in (named, *others) if part)


def configuration_page() -> str:
    entries = settings()
    lines = [
        "# Configuration reference",
        "",
        "Generated from the services' settings classes at every docs build: each setting's description is the",
        "docstring under its field. Every setting is an environment variable with the `TOLLGATE_` prefix (a few",
        "names the seeds used are accepted as well) and a safe default for the embedded mode; a bad value stops",
        "start-up with one line naming it. Production mode (`TOLLGATE_MODE=production`) refuses to start without",
        "its secrets rather than inventing them.",
        "",
        "Provider keys are read from the variables the catalog names (`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`,",
        "`GROQ_API_KEY`, …). `make run PROFILE=prod` keeps the production secrets it generates in",
        "`data/prod-secrets.env` (0600) and the service identities in `data/identity/` (0600), handing each",
        "service only its own. The tests read `TOLLGATE_TEST_POSTGRES_URL`, `TOLLGATE_TEST_REDIS_URL` and",
        "`TOLLGATE_FUZZ_EXAMPLES` (see [Development](../development.md)).",
        "",
        "*Read by* names the settings classes that have the field: a shared one is known to every service (and the",
        "`tollgate` CLI), and its description says which of them act on it.",
    ]
    for section, title in SECTIONS.items():
        rows = sorted((env, e) for env, e in entries.items() if e["section"] == section)
        if not rows:
            continue
        lines += ["", f"## {title}", ""]
        lines += ["| Variable | Type | Default | Read by | Description |", "|---|---|---|---|---|"]
        for env, e in rows:
            lines.append(f"| `{env}` | {e['type']} | {e['default']} | {_readers(e['readers'])} | {e['description']} |")
    return "\n".join(lines) + "\n"


# --- routes ---------------------------------------------------------------------------------------------------


def routes() -> list[tuple[str, str, dict[str, Any] | None]]:
    """(method, path, OpenAPI operation or None) for every route the gateway serves, in its own order."""
    from services.gateway.app import all_routes
    from services.gateway.openapi import document

    served = all_routes()
    paths = document()["paths"]
    found = []
    for route in served:
        path = getattr(route, "path", "").replace("{model:path}", "{model}")
        for method in sorted(getattr(route, "methods", None) or ()):
            if method != "HEAD":
                found.append((method, path, paths.get(path, {}).get(method.lower())))
    return found


def missing_routes() -> list[str]:
    """Routes without an OpenAPI operation that has a summary."""
    return [f"{method} {path}" for method, path, op in routes() if not (op and op.get("summary"))]


def routes_page() -> str:
    from services.gateway.openapi import ALIAS_PREFIX

    found = routes()
    served = {(method, path) for method, path, _ in found}
    lines = [
        "# Route reference",
        "",
        "Generated from the gateway's routes and its OpenAPI document (`GET /openapi.json`) at every docs build.",
        'Routes marked "key" need `Authorization: Bearer tg-…` (or the console\'s session cookie with its',
        "`X-CSRF-Token`); routes under `/v1/admin/` need a key with the `admin` scope. `GET /metrics` is not on",
        "the public port: it is served on `TOLLGATE_GATEWAY_METRICS_PORT` only. What each route does is told in",
        "[tollgate's own routes](../api/tollgate.md) and the [OpenAI API](../api/openai.md).",
        "",
        "| Method | Route | Also at | Auth | Summary |",
        "|---|---|---|---|---|",
    ]
    for method, path, op in found:
        if path.startswith(ALIAS_PREFIX + "/") and (method, "/v1" + path.removeprefix(ALIAS_PREFIX)) in served:
            continue
        alias = ALIAS_PREFIX + path.removeprefix("/v1") if path.startswith("/v1/") else ""
        also = f"`{alias}`" if (method, alias) in served else ""
        auth = "none" if op is not None and op.get("security") == [] else "key"
        summary = _one_line(op.get("summary") if op else "")
        lines.append(f"| `{method}` | `{path}` | {also} | {auth} | {summary} |")
    return "\n".join(lines) + "\n"


# --- CLI ------------------------------------------------------------------------------------------------------


def _commands(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()) -> Iterator[tuple[str, str, Any]]:
    """(`tollgate group command`, its help line, its parser) for every command, groups first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield " ".join(("tollgate", *words, name)), str(helps.get(name) or ""), sub
                yield from _commands(sub, (*words, name))


def commands() -> list[tuple[str, str, str]]:
    """(command, help line, `--help` output) for every group and command of the CLI."""
    from services.cli.__main__ import parser

    width = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal: the page must not depend on one
    try:
        return [(name, text, sub.format_help()) for name, text, sub in _commands(parser())]
    finally:
        if width is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = width


def missing_commands() -> list[str]:
    """Commands (and groups) registered without a help line."""
    return [name for name, text, _ in commands() if not text.strip()]


def cli_page() -> str:
    lines = [
        "# CLI reference",
        "",
        "Generated from `tollgate --help` and each command's own help at every docs build. How the commands are",
        "used is told in the [CLI guide](../cli.md).",
    ]
    for name, text, usage in commands():
        level = "##" if name.count(" ") == 1 else "###"
        sentence = text[:1].upper() + text[1:].rstrip(".") + "."
        lines += ["", f"{level} `{name}`", "", sentence, "", "```text", usage.rstrip(), "```"]
    return "\n".join(lines) + "\n"


PAGES = {
    "reference/configuration.md": configuration_page,
    "reference/routes.md": routes_page,
    "reference/cli.md": cli_page,
}


def missing() -> list[str]:
    """Everything undocumented, one line each."""
    return (
        [f"setting {name} has no description" for name in missing_settings()]
        + [f"route {name} has no OpenAPI summary" for name in missing_routes()]
        + [f"command {name} has no help" for name in missing_commands()]
    )
