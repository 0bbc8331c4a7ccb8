"""Credits settings: amounts typed in credits become exact micro-credits; bad values stop start-up."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.credits.settings import CreditsSettings, to_credits, to_micro
from services.runtime.settings import load


def test_credits_convert_exactly() -> None:
    assert to_micro("1000") == 1_000_000_000
    assert to_micro(Decimal("0.000001")) == 1
    assert to_micro("12.5") == 12_500_000
    assert to_credits(1) == "0.000001" and to_credits(-2_500_000) == "-2.500000"
    with pytest.raises(ValueError):
        to_micro("0.0000001")


def test_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load(CreditsSettings)
    assert (settings.default_grant_micro, settings.low_threshold_micro) == (1000 * 10**6, 10 * 10**6)
    assert settings.database_url().endswith("credits.db")
    monkeypatch.setenv("TOLLGATE_CREDITS_DEFAULT_GRANT", "0.25")
    monkeypatch.setenv("TOLLGATE_CREDITS_DATABASE_URL", "postgresql://db/credits")
    settings = load(CreditsSettings)
    assert settings.default_grant_micro == 250_000 and settings.database_url() == "postgresql://db/credits"


@pytest.mark.parametrize("value", ["0.0000001", "-5", "lots"])
def test_bad_grant_stops_start_up_naming_the_setting(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("TOLLGATE_CREDITS_DEFAULT_GRANT", value)
    with pytest.raises(SystemExit) as stop:
        load(CreditsSettings)
    assert "TOLLGATE_CREDITS_DEFAULT_GRANT" in str(stop.value)


def test_a_budget_webhook_without_its_secret_stops_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.credits.__main__ import check, dispatcher_of

    monkeypatch.setenv("TOLLGATE_CREDITS_BUDGET_WEBHOOK_URL", "https://hooks.example/budgets")
    with pytest.raises(SystemExit) as stop:
        check(load(CreditsSettings))
    assert "TOLLGATE_CREDITS_BUDGET_WEBHOOK_SECRET" in str(stop.value)
    assert "TOLLGATE_CREDITS_BUDGET_WEBHOOK_URL" in str(stop.value)
    monkeypatch.setenv("TOLLGATE_CREDITS_BUDGET_WEBHOOK_SECRET", "s3cret-signing-key")
    settings = load(CreditsSettings)
    check(settings)
    destination = dispatcher_of(settings, None).destinations["budget_alert"]  # type: ignore[arg-type]
    assert destination.secret == "s3cret-signing-key"
    assert "s3cret" not in repr(destination)
