"""Who is calling: every internal gRPC call carries a short-lived token signed by its caller for its callee.

Each caller (the gateway, the router, the operator's CLI) holds one secret, from which an Ed25519 key is
derived; every service holds only the public keys of the callers it accepts. A token names its caller and
the one service it is for and expires within minutes, so a service that is compromised can neither sign as
another nor replay what it received against a third. `SignedChannel` attaches the token (and, from the
gateway, the scopes of the user it acts for) to every call; `access.Guard` checks it on the serving side.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import contextvars
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from services.runtime.logging import register_secret
from services.runtime.secrets import stored_secret
from services.runtime.settings import PREFIX, CommonSettings, fail
from tollgate.keyvault.v1 import keyvault_pb2

log = logging.getLogger("tollgate.identity")

GATEWAY, ROUTER, OPERATOR = "gateway", "router", "operator"
CALLERS = (GATEWAY, ROUTER, OPERATOR)

TOKEN_HEADER = "x-tollgate-identity"  # noqa: S105 - a header name
# Sent by the gateway alone (and believed from it alone): the user it speaks for and that user's scopes.
ACTING_USER_HEADER = "x-tollgate-acting-user"
ACTING_SCOPES_HEADER = "x-tollgate-acting-scopes"

VERSION = "tgid1"
TOKEN_SECONDS = 300  # lifetime of one token
REFRESH_SECONDS = 60  # a caller signs a fresh token this often
SKEW_SECONDS = 60  # clock difference tolerated between hosts
MIN_SECRET_CHARS = 32
IDENTITY_DIR = "identity"  # under the data folder, embedded mode


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_setting(name: str) -> str:
    """The setting (without prefix) holding the secret of caller `name`: `GATEWAY_IDENTITY_KEY`."""
    return f"{name.upper()}_IDENTITY_KEY"


def public_setting(name: str) -> str:
    """The setting (without prefix) holding the public key(s) of caller `name`."""
    return f"{name.upper()}_IDENTITY_PUBLIC_KEY"


def private_key(secret: str) -> Ed25519PrivateKey:
    """The signing key of a caller, derived from its secret (any string of at least 32 characters)."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"tollgate identity v1\0" + secret.encode()).digest())


def public_key(secret: str) -> str:
    """The public key of the caller whose secret this is, as verifiers are configured with it."""
    return _b64(private_key(secret).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def parse_public_keys(text: str) -> list[Ed25519PublicKey]:
    """One key or several, comma-separated (the new one and the old one while rotating); ValueError if bad."""
    keys = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            raw = _unb64(part)
        except (binascii.Error, ValueError):
            raise ValueError(f"{part[:8]}… is not base64url") from None
        if len(raw) != 32:
            raise ValueError(f"{part[:8]}… is not a 32-byte Ed25519 public key")
        keys.append(Ed25519PublicKey.from_public_bytes(raw))
    if not keys:
        raise ValueError("no public key")
    return keys


def audience_of(method: str) -> str | None:
    """The service a method belongs to: `/tollgate.credits.v1.Credits/Reserve` -> `credits`."""
    if not method.startswith("/tollgate."):
        return None
    return method.split(".", 2)[1]


class Signer:
    """Signs this process's tokens, one per callee, each reused until it is due for renewal."""

    def __init__(self, name: str, secret: str, clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self._key = private_key(secret)
        self._clock = clock
        self._tokens: dict[str, tuple[float, str]] = {}

    def token(self, audience: str) -> str:
        now = self._clock()
        cached = self._tokens.get(audience)
        if cached is not None and cached[0] > now:
            return cached[1]
        issued = int(now)
        claims = {"sub": self.name, "aud": audience, "iat": issued, "exp": issued + TOKEN_SECONDS}
        body = f"{VERSION}.{_b64(orjson.dumps(claims))}"
        token = f"{body}.{_b64(self._key.sign(body.encode()))}"
        self._tokens[audience] = (now + REFRESH_SECONDS, token)
        return token


class Unauthenticated(Exception):
    """A token that does not prove who sent it; the message says why (never the token)."""


class Verifier:
    """Checks tokens sent to `audience` against the public keys of the callers it accepts."""

    def __init__(
        self,
        audience: str,
        keys: Mapping[str, Sequence[Ed25519PublicKey]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.audience = audience
        self.keys = {name: tuple(found) for name, found in keys.items()}
        self._clock = clock
        self._seen: dict[str, tuple[str, float]] = {}

    def caller(self, token: str) -> str:
        """The name of the caller that signed `token` for this service, or `Unauthenticated`."""
        now = self._clock()
        seen = self._seen.get(token)
        if seen is not None and seen[1] + SKEW_SECONDS > now:
            return seen[0]
        name, expires = self._check(token, now)
        if len(self._seen) > 10_000:
            self._seen.clear()
        self._seen[token] = (name, expires)
        return name

    def _check(self, token: str, now: float) -> tuple[str, float]:
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != VERSION:
            raise Unauthenticated("malformed token")
        try:
            claims = orjson.loads(_unb64(parts[1]))
            signature = _unb64(parts[2])
        except (ValueError, binascii.Error):
            raise Unauthenticated("malformed token") from None
        if not isinstance(claims, dict):
            raise Unauthenticated("malformed token")
        name, audience, issued, expires = claims.get("sub"), claims.get("aud"), claims.get("iat"), claims.get("exp")
        if not (
            isinstance(name, str)
            and isinstance(audience, str)
            and type(issued) is int  # not bool
            and type(expires) is int
        ):
            raise Unauthenticated("malformed token")
        keys = self.keys.get(name)
        if not keys:
            raise Unauthenticated(f"{name!r} is not a caller of {self.audience}")
        signed = f"{parts[0]}.{parts[1]}".encode()
        if not any(_valid(key, signature, signed) for key in keys):
            raise Unauthenticated(f"the token is not signed by {name}'s key")
        if audience != self.audience:
            raise Unauthenticated(f"the token is for {audience}, not {self.audience}")
        if expires - issued > 2 * TOKEN_SECONDS or issued > now + SKEW_SECONDS:
            raise Unauthenticated("the token's lifetime is not plausible (check the clocks)")
        if expires + SKEW_SECONDS <= now:
            raise Unauthenticated("the token has expired (check the clocks)")
        return name, float(expires)


def _valid(key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


# --- who this process is, and whom it speaks for --------------------------------------------------------

_signer: Signer | None = None
_acting: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("acting", default=None)


def use(signer: Signer | None) -> None:
    """Sign every call this process makes from now on as `signer` (None: unsigned)."""
    global _signer
    _signer = signer


def act_for(user_id: str, scopes: Iterable[str]) -> None:
    """The gateway's calls made in this request speak for this user, with these scopes (`admin` matters)."""
    _acting.set((user_id, ",".join(scopes)))


@contextlib.contextmanager
def acting_for_nobody() -> Iterator[None]:
    """A request's calls speak for nobody until it calls `act_for`, and whom they spoke for ends with it (a context
    that outlives the request, as an in-process app's does, must not keep an admin's identity)."""
    token = _acting.set(None)
    try:
        yield
    finally:
        _acting.reset(token)


def outgoing(method: str, metadata: Any, signer: Signer | None = None) -> tuple[tuple[str, str], ...]:
    """`metadata` plus the identity of this process for the service `method` belongs to."""
    pairs = tuple(metadata or ())
    signer = signer or _signer
    audience = audience_of(method)
    if signer is None or audience is None:
        return pairs
    pairs += ((TOKEN_HEADER, signer.token(audience)),)
    acting = _acting.get()
    if acting is not None:
        pairs += ((ACTING_USER_HEADER, acting[0]), (ACTING_SCOPES_HEADER, acting[1]))
    return pairs


class _SignedCall:
    __slots__ = ("_call", "_method", "_signer")

    def __init__(self, call: Any, method: str, signer: Signer | None) -> None:
        self._call, self._method, self._signer = call, method, signer

    def __call__(self, request: Any, *args: Any, metadata: Any = None, **kwargs: Any) -> Any:
        return self._call(request, *args, metadata=outgoing(self._method, metadata, self._signer), **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)


class SignedChannel:
    """A gRPC channel (aio or sync) whose every call carries the caller's identity.

    The token is added where the stub's method is made, so no call is forgotten and none pays for an
    interceptor. Without an explicit `signer` the process's own (`use`) is read at each call.
    """

    def __init__(self, channel: Any, signer: Signer | None = None) -> None:
        self._channel = channel
        self._signer = signer

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _SignedCall(self._channel.unary_unary(method, *args, **kwargs), method, self._signer)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _SignedCall(self._channel.unary_stream(method, *args, **kwargs), method, self._signer)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _SignedCall(self._channel.stream_unary(method, *args, **kwargs), method, self._signer)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _SignedCall(self._channel.stream_stream(method, *args, **kwargs), method, self._signer)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._channel, name)

    async def __aenter__(self) -> SignedChannel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._channel.close()

    def __enter__(self) -> SignedChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self._channel.close()


# --- who is calling this process -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Peer:
    """The authenticated caller of the current call."""

    service: str  # gateway | router | operator; "" for a caller that presented its own tg- key
    scopes: frozenset[str] = frozenset()  # the user's scopes the gateway acts with, or the key's own
    acting_user: str = ""  # the user the gateway speaks for, when it said so
    user: keyvault_pb2.Principal | None = field(default=None, compare=False)

    @property
    def admin(self) -> bool:
        """The operator, or the gateway acting for a user whose key has the admin scope."""
        return self.service == OPERATOR or (self.service == GATEWAY and "admin" in self.scopes)

    def describe(self) -> str:
        if self.user is not None:
            return f"the API key {self.user.key_id}"
        if self.service == GATEWAY and self.acting_user:
            return f"the gateway acting for {self.acting_user}"
        return f"the {self.service}"


_peer: contextvars.ContextVar[Peer | None] = contextvars.ContextVar("peer", default=None)


def current() -> Peer | None:
    """The caller of the call being served (None outside a guarded call)."""
    return _peer.get()


def set_current(peer: Peer | None) -> contextvars.Token[Peer | None]:
    return _peer.set(peer)


def reset_current(token: contextvars.Token[Peer | None]) -> None:
    _peer.reset(token)


# --- configuration -------------------------------------------------------------------------------------


def provision(data_dir: Path, name: str) -> str:
    """The secret of caller `name` kept in `data_dir/identity/` (0600), created on first use, with its public key.

    This is the embedded mode's store; production reads the settings instead.
    """
    folder = Path(data_dir) / IDENTITY_DIR
    secret, created = stored_secret(folder / f"{name}.key")
    if created:
        log.info("generated the %s's identity into %s (embedded mode)", name, folder)
    register_secret(secret)
    public = folder / f"{name}.pub"
    if not public.exists() or public.read_text().strip() != public_key(secret):
        tmp = public.with_name(f"{public.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(public_key(secret) + "\n")
        os.replace(tmp, public)
    return secret


def provisioned_public_key(data_dir: Path, name: str) -> str:
    """The public key of caller `name` from the data folder, provisioning the caller if it is new."""
    public = Path(data_dir) / IDENTITY_DIR / f"{name}.pub"
    if not public.exists():
        provision(data_dir, name)
    return public.read_text().strip()


def signer_for(settings: CommonSettings, name: str, secret: str, create: bool = True) -> Signer:
    """This process's identity from its `TOLLGATE_<NAME>_IDENTITY_KEY`; embedded mode keeps one on disk.

    `create=False` (the CLI) uses the data folder's key only if it exists, rather than making one nobody trusts.
    """
    setting = key_setting(name)
    secret = secret.strip()
    stored = Path(settings.data_dir) / IDENTITY_DIR / f"{name}.key"
    if secret:
        if len(secret) < MIN_SECRET_CHARS:
            fail(setting, f"must be at least {MIN_SECRET_CHARS} characters")
        register_secret(secret)
    elif settings.production:
        fail(
            setting,
            "required in production (this process's identity); generate one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'",
        )
    elif not create and not stored.exists():
        fail(setting, f"not set, and {stored} does not exist (set {PREFIX}DATA_DIR to the suite's data folder)")
    else:
        secret = provision(settings.data_dir, name)
    return Signer(name, secret)


def verifier_for(settings: CommonSettings, audience: str, callers: Iterable[str]) -> Verifier:
    """The verifier of `audience` with the public keys of `callers` from settings (or the data folder)."""
    keys: dict[str, list[Ed25519PublicKey]] = {}
    for name in sorted(set(callers)):
        setting = public_setting(name)
        value = str(getattr(settings, setting.lower(), "") or "").strip()
        if not value:
            if settings.production:
                fail(
                    setting,
                    f"required in production (the {name}'s public key, for {audience} to verify its calls); print it "
                    f"from {PREFIX}{key_setting(name)} with: python -m services.runtime.identity public {name}",
                )
            value = provisioned_public_key(settings.data_dir, name)
        try:
            keys[name] = parse_public_keys(value)
        except ValueError as exc:
            fail(setting, str(exc))
    return Verifier(audience, keys)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m services.runtime.identity new [NAME…]` prints fresh secrets and their public keys as env lines;
    `… public [NAME…]` prints the public keys of the secrets in `TOLLGATE_<NAME>_IDENTITY_KEY`."""
    import argparse
    import secrets

    parser = argparse.ArgumentParser(prog="python -m services.runtime.identity", description=main.__doc__)
    parser.add_argument("command", choices=("new", "public"))
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of {', '.join(CALLERS)} (default: all)")
    args = parser.parse_args(argv)
    if unknown := sorted(set(args.names) - set(CALLERS)):
        parser.error(f"unknown caller {unknown[0]!r}; the callers are {', '.join(CALLERS)}")
    for name in args.names or CALLERS:
        if args.command == "new":
            secret = secrets.token_urlsafe(32)
            print(f"{PREFIX}{key_setting(name)}={secret}")
        else:
            secret = os.environ.get(f"{PREFIX}{key_setting(name)}", "").strip()
            if not secret and name == ROUTER:
                secret = os.environ.get(f"{PREFIX}ROUTER_TOKEN", "").strip()  # the router's former shared secret
            if len(secret) < MIN_SECRET_CHARS:
                print(f"tollgate: {PREFIX}{key_setting(name)} is not set (or shorter than 32 characters)")
                return 1
        print(f"{PREFIX}{public_setting(name)}={public_key(secret)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
