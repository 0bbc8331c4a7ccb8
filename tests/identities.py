"""Service identities for tests that serve or call the gRPC APIs directly (`services/runtime/identity.py`).

Fixed test-only secrets for every caller; servers built in-process get the same `Guard` the services run,
and clients sign their calls as the caller they play.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc

from services.runtime import identity
from services.runtime.access import Access, Authenticate, Guard, Refusal
from services.runtime.identity import SignedChannel, Signer, Verifier

SECRETS = {name: f"tests-only-{name}-identity-secret-0123456789" for name in identity.CALLERS}


def signer(name: str) -> Signer:
    return Signer(name, SECRETS[name])


def env(signs: str | None = None, verifies: Iterable[str] = identity.CALLERS) -> dict[str, str]:
    """Settings of a service process: its own secret (when it calls others) and the public keys it checks."""
    values = {f"TOLLGATE_{identity.public_setting(n)}": identity.public_key(SECRETS[n]) for n in verifies}
    if signs is not None:
        values[f"TOLLGATE_{identity.key_setting(signs)}"] = SECRETS[signs]
    return values


def verifier(audience: str) -> Verifier:
    keys = {n: identity.parse_public_keys(identity.public_key(s)) for n, s in SECRETS.items()}
    return Verifier(audience, keys)


def guard(access: Access, users: Authenticate | None = None, on_refused: Refusal | None = None) -> Guard:
    """The guard a service runs, for an in-process server of `access`'s service."""
    return Guard([access], verifier(access.service.split(".")[1]), users, on_refused)


class _Extra:
    __slots__ = ("_call", "_pairs")

    def __init__(self, call: Any, pairs: tuple[tuple[str, str], ...]) -> None:
        self._call, self._pairs = call, pairs

    def __call__(self, request: Any, *args: Any, metadata: Any = None, **kwargs: Any) -> Any:
        return self._call(request, *args, metadata=tuple(metadata or ()) + self._pairs, **kwargs)


class ActingChannel:
    """A channel whose calls say they act for one user with these scopes (as the gateway's do)."""

    def __init__(self, channel: Any, user: str, scopes: Iterable[str]) -> None:
        self._channel = channel
        self._pairs = ((identity.ACTING_USER_HEADER, user), (identity.ACTING_SCOPES_HEADER, ",".join(scopes)))

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _Extra(self._channel.unary_unary(method, *args, **kwargs), self._pairs)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _Extra(self._channel.unary_stream(method, *args, **kwargs), self._pairs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._channel, name)


def aio_channel(address: str, name: str | None = identity.OPERATOR) -> Any:
    """An aio channel to `address` signed as `name` (None: a plain channel, whatever this process signs as)."""
    raw = grpc.aio.insecure_channel(address)
    return SignedChannel(raw, signer(name)) if name else raw


def channel(address: str, name: str | None = identity.OPERATOR) -> Any:
    """A blocking channel to `address` signed as `name` (None: a plain channel)."""
    raw = grpc.insecure_channel(address)
    return SignedChannel(raw, signer(name)) if name else raw


def admin_gateway(channel: Any) -> ActingChannel:
    """Calls as the gateway acting for an admin key: everything keyvault and credits offer users and admins."""
    return ActingChannel(channel, "admin", ("admin", "user"))
