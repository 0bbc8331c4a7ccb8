"""Every service in production mode refuses to start without its identity settings, in one line naming the
setting and never quoting a secret; embedded mode needs none of them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import identities
from tests.conftest import ROOT, free_port

GATEWAY_SECRET = identities.SECRETS["gateway"]


def start_refused(service: str, tmp_path: Path, **values: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    env |= {
        "TOLLGATE_MODE": "production",
        "TOLLGATE_DATA_DIR": str(tmp_path),
        f"TOLLGATE_{service.upper()}_PORT": str(free_port()),
        # Databases nobody answers: identity settings are checked before any connection.
        "TOLLGATE_CREDITS_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none",
        "TOLLGATE_HEALTH_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none",
        **values,
    }
    env = {k: v for k, v in env.items() if v}
    proc = subprocess.run(
        [sys.executable, "-m", f"services.{service}"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    stderr = proc.stderr.strip()
    assert stderr.count("\n") == 0, stderr
    assert GATEWAY_SECRET not in stderr
    assert not (tmp_path / "identity").exists(), "production never makes an identity up"
    return stderr


@pytest.mark.parametrize(
    ("service", "missing"),
    [
        ("gateway", "TOLLGATE_GATEWAY_IDENTITY_KEY"),
        ("router", "TOLLGATE_ROUTER_IDENTITY_KEY"),
        ("router", "TOLLGATE_GATEWAY_IDENTITY_PUBLIC_KEY"),
        ("credits", "TOLLGATE_ROUTER_IDENTITY_PUBLIC_KEY"),
        ("health", "TOLLGATE_OPERATOR_IDENTITY_PUBLIC_KEY"),
    ],
)
def test_production_names_the_missing_identity_setting(tmp_path: Path, service: str, missing: str) -> None:
    complete = {**identities.env(signs=service if service in ("gateway", "router") else None)}
    stderr = start_refused(service, tmp_path, **{**complete, missing: ""})
    assert stderr.startswith(f"tollgate: invalid configuration: {missing}: required in production"), stderr


def test_a_short_identity_secret_is_refused(tmp_path: Path) -> None:
    stderr = start_refused("gateway", tmp_path, TOLLGATE_GATEWAY_IDENTITY_KEY="short-secret")
    assert stderr == ("tollgate: invalid configuration: TOLLGATE_GATEWAY_IDENTITY_KEY: must be at least 32 characters")
    assert "short-secret" not in stderr


def test_the_cli_in_production_needs_the_operator_identity(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    env |= {"TOLLGATE_MODE": "production", "TOLLGATE_DATA_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "services.cli", "keys", "list", "--keyvault-addr", f"127.0.0.1:{free_port()}"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert proc.stderr.strip().startswith(
        "tollgate: invalid configuration: TOLLGATE_OPERATOR_IDENTITY_KEY: required in production"
    )
