"""`python -m services.keyvault` as a real process: production refuses to start without its secrets (one clear
line), embedded mode creates its master key and bootstrap keys once and reuses them across restarts."""

from __future__ import annotations

import base64
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.keyvault.bootstrap import BOOTSTRAP_FILE
from services.keyvault.masterkeys import KEY_FILE
from services.runtime import identity
from services.runtime.identity import SignedChannel, Signer
from tests import identities
from tests.conftest import ROOT, free_port
from tollgate.keyvault.v1 import keyvault_pb2 as pb
from tollgate.keyvault.v1 import keyvault_pb2_grpc

ADMIN_KEY = "tg-" + "A" * 43
VAULT_KEYS = "v1:" + base64.urlsafe_b64encode(b"k" * 32).decode()


def clean_env(tmp_path: Path, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_") and k != "BYOK_ENCRYPTION_KEY"}
    return env | {"TOLLGATE_DATA_DIR": str(tmp_path), "TOLLGATE_KEYVAULT_PORT": str(free_port())} | values


def production(tmp_path: Path, **values: str) -> dict[str, str]:
    complete = {
        "TOLLGATE_MODE": "production",
        "TOLLGATE_VAULT_KEYS": VAULT_KEYS,
        "TOLLGATE_ADMIN_KEY": ADMIN_KEY,
        "TOLLGATE_KEY_PEPPER": "pepper-0123456789",
        "TOLLGATE_KEYVAULT_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none",
        **identities.env(),
    }
    return clean_env(tmp_path, **{k: v for k, v in (complete | values).items() if v})


def start_refused(env: dict[str, str]) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "services.keyvault"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    return proc.stderr.strip()


@pytest.mark.parametrize("missing", ["TOLLGATE_VAULT_KEYS", "TOLLGATE_ADMIN_KEY"])
def test_production_refuses_to_start_without_a_secret(tmp_path: Path, missing: str) -> None:
    stderr = start_refused(production(tmp_path, **{missing: ""}))
    assert stderr.count("\n") == 0, stderr
    assert stderr.startswith("tollgate: invalid configuration: " + missing)
    assert "generate one with: python -c" in stderr
    assert ADMIN_KEY not in stderr and VAULT_KEYS[3:] not in stderr
    assert not (tmp_path / KEY_FILE).exists()


@pytest.mark.parametrize("caller", ["gateway", "router", "operator"])
def test_production_refuses_to_start_without_a_callers_public_key(tmp_path: Path, caller: str) -> None:
    missing = f"TOLLGATE_{caller.upper()}_IDENTITY_PUBLIC_KEY"
    stderr = start_refused(production(tmp_path, **{missing: ""}))
    assert stderr.count("\n") == 0, stderr
    assert stderr.startswith("tollgate: invalid configuration: " + missing)
    assert not (tmp_path / "identity").exists()


def test_production_refuses_a_malformed_public_key(tmp_path: Path) -> None:
    stderr = start_refused(production(tmp_path, TOLLGATE_ROUTER_IDENTITY_PUBLIC_KEY="not-a-key"))
    assert stderr.startswith("tollgate: invalid configuration: TOLLGATE_ROUTER_IDENTITY_PUBLIC_KEY")


def test_production_refuses_a_malformed_admin_key(tmp_path: Path) -> None:
    stderr = start_refused(production(tmp_path, TOLLGATE_ADMIN_KEY="hunter2-admin"))
    assert stderr.startswith("tollgate: invalid configuration: TOLLGATE_ADMIN_KEY")
    assert "hunter2" not in stderr


def wait_serving(address: str, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as chan:
        stub = health_pb2_grpc.HealthStub(chan)
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    pytest.fail("keyvault did not become ready")


def run_once(env: dict[str, str], provider_key: str | None) -> str:
    """Start keyvault, store or read a provider key, stop it; returns the key read back."""
    address = f"127.0.0.1:{env['TOLLGATE_KEYVAULT_PORT']}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.keyvault"], env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_serving(address, proc)
        # Embedded mode: the callers' identities are the ones kept in the data folder.
        data = Path(env["TOLLGATE_DATA_DIR"])
        gateway, router = (Signer(n, identity.provision(data, n)) for n in ("gateway", "router"))
        with SignedChannel(grpc.insecure_channel(address), gateway) as chan:
            stub = keyvault_pb2_grpc.KeyVaultStub(chan)
            if provider_key:
                stub.PutProviderKey(pb.PutProviderKeyRequest(user_id="demo", provider="openai", api_key=provider_key))
            demo = json.loads((data / BOOTSTRAP_FILE).read_text())["demo_key"]
            assert stub.Authenticate(pb.AuthenticateRequest(api_key=demo)).user_id == "demo"
        with SignedChannel(grpc.insecure_channel(address), router) as chan:
            secret = keyvault_pb2_grpc.KeyVaultStub(chan).GetProviderKey(
                pb.GetProviderKeyRequest(user_id="demo", provider="openai")
            )
        return str(secret.api_key)
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        if provider_key:
            assert provider_key not in err


@pytest.mark.slow
def test_embedded_master_key_file_is_0600_and_reused_across_restarts(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    stored = "sk-restart-0123456789abcdefghij"
    assert run_once(env, stored) == stored
    key_file = tmp_path / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / BOOTSTRAP_FILE).stat().st_mode) == 0o600
    for private in ("keyvault.db", "identity/gateway.key", "identity/router.pub", "identity/operator.key"):
        assert stat.S_IMODE((tmp_path / private).stat().st_mode) == 0o600, private
    assert stat.S_IMODE((tmp_path / "identity").stat().st_mode) == 0o700
    first_key, first_bootstrap = key_file.read_text(), (tmp_path / BOOTSTRAP_FILE).read_text()

    assert run_once(clean_env(tmp_path), None) == stored
    assert key_file.read_text() == first_key
    assert (tmp_path / BOOTSTRAP_FILE).read_text() == first_bootstrap
