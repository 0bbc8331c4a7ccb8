"""Service identity tokens: signed by the caller, for one callee, short-lived; checked against public keys only."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import orjson
import pytest

from services.runtime import identity
from services.runtime.identity import Signer, Unauthenticated, Verifier, parse_public_keys, public_key
from services.runtime.settings import CommonSettings, Mode

GATEWAY = "gateway-secret-for-unit-tests-0123456789"
ROUTER = "router-secret-for-unit-tests-0123456789"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def verifier(audience: str = "credits", clock: Clock | None = None, **secrets: str) -> Verifier:
    keys = {name: parse_public_keys(public_key(secret)) for name, secret in secrets.items()}
    return Verifier(audience, keys, clock or Clock())


def test_a_token_names_its_signer_for_its_audience() -> None:
    clock = Clock()
    token = Signer("gateway", GATEWAY, clock).token("credits")
    assert verifier(clock=clock, gateway=GATEWAY, router=ROUTER).caller(token) == "gateway"
    assert GATEWAY not in token


def test_a_token_for_another_service_is_refused() -> None:
    """What a compromised credits sees (tokens for credits) is worth nothing at keyvault."""
    clock = Clock()
    token = Signer("gateway", GATEWAY, clock).token("credits")
    with pytest.raises(Unauthenticated, match="for credits, not keyvault"):
        verifier("keyvault", clock, gateway=GATEWAY).caller(token)


def test_a_caller_cannot_sign_as_another() -> None:
    clock = Clock()
    forged = Signer("gateway", ROUTER, clock).token("credits")  # the router's key, the gateway's name
    with pytest.raises(Unauthenticated, match="not signed by gateway's key"):
        verifier(clock=clock, gateway=GATEWAY, router=ROUTER).caller(forged)
    unknown = Signer("intruder", ROUTER, clock).token("credits")
    with pytest.raises(Unauthenticated, match="not a caller of credits"):
        verifier(clock=clock, gateway=GATEWAY).caller(unknown)


def test_tampered_claims_break_the_signature() -> None:
    clock = Clock()
    version, claims, signature = Signer("router", ROUTER, clock).token("credits").split(".")
    changed = orjson.loads(base64.urlsafe_b64decode(claims + "=="))
    changed["exp"] += 10_000
    body = base64.urlsafe_b64encode(orjson.dumps(changed)).rstrip(b"=").decode()
    with pytest.raises(Unauthenticated, match="not signed"):
        verifier(clock=clock, router=ROUTER).caller(f"{version}.{body}.{signature}")
    for garbage in ("", "x", "tgid1.a.b", "tgid2.e30.c2ln", "tgid1.bm90IGpzb24.c2ln"):
        with pytest.raises(Unauthenticated):
            verifier(clock=clock, router=ROUTER).caller(garbage)


def test_tokens_expire_and_callers_renew_them() -> None:
    clock = Clock()
    signer = Signer("router", ROUTER, clock)
    check = verifier(clock=clock, router=ROUTER)
    first = signer.token("credits")
    clock.now += identity.REFRESH_SECONDS - 1
    assert signer.token("credits") == first
    clock.now += 2
    renewed = signer.token("credits")
    assert renewed != first and check.caller(renewed) == "router"
    clock.now += identity.TOKEN_SECONDS + identity.SKEW_SECONDS
    for token in (first, renewed):
        with pytest.raises(Unauthenticated, match="expired"):
            check.caller(token)


def test_clock_skew_is_tolerated_within_bounds() -> None:
    caller, callee = Clock(), Clock()
    token = Signer("router", ROUTER, caller).token("credits")
    callee.now = caller.now - identity.SKEW_SECONDS + 1  # the callee's clock is behind
    assert verifier(clock=callee, router=ROUTER).caller(token) == "router"
    callee.now = caller.now - identity.SKEW_SECONDS - 5
    with pytest.raises(Unauthenticated, match="clocks"):
        verifier(clock=callee, router=ROUTER).caller(token)


def test_rotation_accepts_the_old_and_the_new_key() -> None:
    clock = Clock()
    new = "router-secret-rotated-for-unit-tests-01234"
    both = Verifier("credits", {"router": parse_public_keys(f"{public_key(new)}, {public_key(ROUTER)}")}, clock)
    assert both.caller(Signer("router", ROUTER, clock).token("credits")) == "router"
    assert both.caller(Signer("router", new, clock).token("credits")) == "router"


def test_public_keys_are_validated() -> None:
    for bad in ("", "not base64!", base64.urlsafe_b64encode(b"short").decode()):
        with pytest.raises(ValueError):
            parse_public_keys(bad)


def test_outgoing_metadata_is_signed_for_the_method_service() -> None:
    clock = Clock()
    signer = Signer("gateway", GATEWAY, clock)
    pairs = dict(identity.outgoing("/tollgate.keyvault.v1.KeyVault/Authenticate", (("x-request-id", "r"),), signer))
    assert pairs["x-request-id"] == "r"
    assert verifier("keyvault", clock, gateway=GATEWAY).caller(pairs[identity.TOKEN_HEADER]) == "gateway"
    assert identity.outgoing("/grpc.health.v1.Health/Check", (), signer) == ()


def test_production_needs_every_identity_setting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    production = CommonSettings(mode=Mode.PRODUCTION, data_dir=tmp_path)
    with pytest.raises(SystemExit, match="TOLLGATE_GATEWAY_IDENTITY_KEY: required in production"):
        identity.signer_for(production, "gateway", "")
    with pytest.raises(SystemExit, match="TOLLGATE_ROUTER_IDENTITY_PUBLIC_KEY: required in production"):
        identity.verifier_for(production, "keyvault", ["router"])
    with pytest.raises(SystemExit, match="TOLLGATE_GATEWAY_IDENTITY_KEY: must be at least 32 characters"):
        identity.signer_for(production, "gateway", "short")
    broken = CommonSettings(mode=Mode.PRODUCTION, router_identity_public_key="x")
    with pytest.raises(SystemExit, match="TOLLGATE_ROUTER_IDENTITY_PUBLIC_KEY"):
        identity.verifier_for(broken, "keyvault", ["router"])
    assert not (tmp_path / "identity").exists()


def test_embedded_mode_keeps_identities_in_the_data_folder(tmp_path: Path) -> None:
    embedded = CommonSettings(data_dir=tmp_path)
    signer = identity.signer_for(embedded, "router", "")
    check = identity.verifier_for(embedded, "credits", ["router"])
    assert check.caller(signer.token("credits")) == "router"
    folder = tmp_path / "identity"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("router.key", "router.pub"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    assert (folder / "router.pub").read_text().strip() == public_key((folder / "router.key").read_text().strip())
    # The same key on every later start; the CLI never makes one nobody trusts.
    assert identity.provision(tmp_path, "router") == (folder / "router.key").read_text().strip()
    with pytest.raises(SystemExit, match="TOLLGATE_OPERATOR_IDENTITY_KEY: not set"):
        identity.signer_for(embedded, "operator", "", create=False)


def test_the_command_prints_keys_and_public_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert identity.main(["new", "router"]) == 0
    lines = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines())
    secret = lines["TOLLGATE_ROUTER_IDENTITY_KEY"]
    assert lines["TOLLGATE_ROUTER_IDENTITY_PUBLIC_KEY"] == public_key(secret)


def test_the_routers_former_token_is_accepted_as_its_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.router.settings import RouterSettings

    monkeypatch.setenv("TOLLGATE_ROUTER_TOKEN", ROUTER)
    assert RouterSettings().router_identity_key == ROUTER
    monkeypatch.setenv("TOLLGATE_ROUTER_IDENTITY_KEY", GATEWAY)
    assert RouterSettings().router_identity_key == GATEWAY
    monkeypatch.delenv("TOLLGATE_ROUTER_IDENTITY_KEY")
    assert identity.main(["public", "router"]) == 0
