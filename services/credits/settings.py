"""credits' settings (`TOLLGATE_CREDITS_*` environment variables), on top of the common ones.

Amounts a person types are in credits (1 credit = 1,000,000 micro-credits = 1 US dollar of provider
list price); they become integer micro-credits here, once, and a value finer than one micro-credit
stops start-up.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from pydantic import field_validator

from services.runtime.settings import CommonSettings

MICRO = 1_000_000


def to_micro(credits: Decimal | int | str) -> int:
    """Credits (a decimal string or number) as integer micro-credits; sub-micro amounts are refused."""
    value = Decimal(str(credits)) * MICRO
    if value != value.to_integral_value():
        raise ValueError(f"{credits} is finer than one micro-credit")
    return int(value)


def to_credits(micro: int) -> str:
    """Micro-credits as a decimal string of credits, exact."""
    return str((Decimal(micro) / MICRO).quantize(Decimal("0.000001")))


class CreditsSettings(CommonSettings):
    credits_port: int = 50052
    """gRPC port."""
    credits_database_url: str = ""
    """The ledger's database. Empty: `sqlite:///<data_dir>/credits.db` (embedded); production needs a
    `postgresql://` URL."""
    credits_pool_size: int = 10
    """Database connections (the SQLAlchemy pool, and as many again for the ledger's one-call functions on
    PostgreSQL)."""

    credits_default_grant: Decimal = Decimal(1000)
    """Credits every new account starts with (a `grant` journal row)."""
    credits_low_threshold: Decimal = Decimal(10)
    """Credits below which an account is low (`X-Credits-Low`, one low-balance event)."""
    credits_default_tier: str = "standard"
    """Tier of new accounts."""

    credits_hold_ttl_seconds: int = 600
    """Hold lifetime when a reserve names none; a hold the router neither settles nor releases in time is expired
    by the sweeper."""
    credits_max_hold_ttl_seconds: int = 3600
    """Longest hold allowed."""
    credits_sweep_interval_seconds: float = 5.0
    """How often expired holds are released."""
    credits_sweep_batch: int = 500
    """Holds per sweep."""

    credits_billing_url: str = ""
    """Lago-compatible usage events endpoint (POST `{"event": …}`); empty disables the dispatcher."""
    credits_billing_api_key: str = ""
    """Bearer token for the billing endpoint."""
    credits_billing_code: str = "llm_usage"
    """Billable metric code of the events."""
    credits_alert_url: str = ""
    """Where low-balance events are posted (JSON); empty keeps them in the outbox only."""
    credits_budget_webhook_url: str = ""
    """Where budget spend alerts are posted (JSON, one per budget, period and threshold); empty keeps them in the
    outbox only."""
    credits_budget_webhook_secret: str = ""
    """Secret that signs each budget alert (`X-Tollgate-Signature: t=<unix>,v1=<hex HMAC-SHA256 of
    "<t>.<body>">`); required when the webhook URL is set. Never logged."""
    credits_outbox_interval_seconds: float = 1.0
    """Outbox dispatch interval."""
    credits_outbox_batch: int = 100
    """Events per dispatch."""
    credits_outbox_max_backoff_seconds: float = 300.0
    """Longest retry back-off of an event."""
    credits_outbox_timeout_seconds: float = 10.0
    """HTTP timeout per post."""

    credits_metrics_interval_seconds: float = 15.0
    """How often the ledger's standing (holds outstanding, outbox backlog, low-credit accounts) is read from the
    database into its gauges; 0 stops reading it."""
    credits_reconcile_interval_seconds: float = 3600.0
    """How often credits reconciles its own ledger in the background (the check of `tollgate credits
    reconcile`) and sets `tollgate_reconcile_mismatches`; the first run is at start-up; 0: never."""

    @field_validator("credits_default_grant", "credits_low_threshold")
    @classmethod
    def _whole_micro(cls, value: Decimal) -> Decimal:
        if value < 0:
            raise ValueError("must not be negative")
        to_micro(value)
        return value

    @property
    def default_grant_micro(self) -> int:
        return to_micro(self.credits_default_grant)

    @property
    def low_threshold_micro(self) -> int:
        return to_micro(self.credits_low_threshold)

    def database_url(self) -> str:
        return self.credits_database_url or f"sqlite:///{Path(self.data_dir) / 'credits.db'}"
