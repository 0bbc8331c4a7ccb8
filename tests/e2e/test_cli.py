"""The operators' CLI against the running suite: users, keys, credits; a revoked key stops working after the TTL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import httpx
import openai

from services.launcher import Suite
from tests.e2e.support import bearer


def tollgate(suite: Suite, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TOLLGATE_KEYVAULT_ADDR": f"{suite.host}:{suite.ports.keyvault}",
        "TOLLGATE_CREDITS_ADDR": f"{suite.host}:{suite.ports.credits}",
        "TOLLGATE_HEALTH_ADDR": f"{suite.host}:{suite.ports.health}",
        **suite.operator_env(),
    }
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_user_lifecycle_through_the_cli(suite: Suite, http: httpx.Client) -> None:
    user = f"cli-{uuid.uuid4().hex[:8]}"
    made = tollgate(suite, "users", "create", user, "--grant", "5")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("tg-")
    assert "1005.000000" in made.stdout

    with openai.OpenAI(base_url=suite.base_url, api_key=key, max_retries=0) as sdk:
        assert sdk.chat.completions.create(model="echo-free", messages=[{"role": "user", "content": "hi"}]).choices

    listed = tollgate(suite, "users", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert user in listed.stdout
    assert key not in listed.stdout

    shown = tollgate(suite, "credits", "show", user)
    assert shown.returncode == 0 and "1005" in shown.stdout

    keys = tollgate(suite, "keys", "list", "--user", user, "--json")
    key_id = next(line.split('"')[3] for line in keys.stdout.splitlines() if '"key_id"' in line)
    assert tollgate(suite, "keys", "revoke", key_id).returncode == 0
    time.sleep(1.5)  # TOLLGATE_AUTH_CACHE_TTL of the e2e suite: the documented revocation delay
    assert http.get("/v1/models", headers=bearer(key)).status_code == 401


def test_cli_errors_are_one_line(suite: Suite) -> None:
    failed = tollgate(suite, "credits", "grant", "someone", "not-a-number")
    assert failed.returncode != 0
    assert "Traceback" not in failed.stderr


def test_teams_and_key_policies_through_the_cli(suite: Suite) -> None:
    import json

    team, user = f"cli-team-{uuid.uuid4().hex[:6]}", f"cli-member-{uuid.uuid4().hex[:6]}"
    made = tollgate(suite, "teams", "create", team, "--name", "CLI team", "--models", "echo-free,tier:FREE")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["models"] == ["echo-free", "tier:FREE"]
    assert tollgate(suite, "teams", "add-member", team, user, "--role", "admin").returncode == 0
    created = tollgate(
        suite,
        "keys",
        "create",
        "--user",
        user,
        "--team",
        team,
        "--max-parallel",
        "2",
        "--model-limit",
        "echo-free=5:1000",
        "--json",
    )
    assert created.returncode == 0, created.stderr
    row = json.loads(created.stdout)
    assert (row["team_id"], row["max_parallel"], row["model_limits"]) == (
        team,
        2,
        {"echo-free": {"rpm": 5, "tpm": 1000}},
    )
    updated = tollgate(suite, "keys", "update", row["key_id"], "--models", "echo-free")
    assert updated.returncode == 0, updated.stderr
    assert json.loads(updated.stdout)["models"] == ["echo-free"] and json.loads(updated.stdout)["max_parallel"] == 2
    shown = json.loads(tollgate(suite, "teams", "show", team).stdout)
    assert shown["members"][0]["user_id"] == user and shown["members"][0]["role"] == "admin"
    assert tollgate(suite, "teams", "update", team, "--pooled").returncode == 0
    assert team in tollgate(suite, "teams", "list").stdout
    assert tollgate(suite, "teams", "remove-member", team, user).returncode == 0
    bad = tollgate(suite, "keys", "create", "--user", "team:x")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert tollgate(suite, "keys", "create", "--user", "u", "--model-limit", "nonsense").returncode != 0
