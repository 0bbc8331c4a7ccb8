"""Console sessions: a `tg-` key exchanged for an HttpOnly cookie, usable only with its CSRF token.

The shared store (Redis with several replicas, memory otherwise) holds a record under a hash of the session
id, never the id itself. The record keeps the API key sealed with AES-GCM under a key derived from the
session id, so the store alone can neither resume a session nor reveal a key; each request unseals it and
authenticates it like a bearer key, which is how a revoked or expired key ends its sessions within
`auth_cache_ttl`. A cookie counts only with the session's `X-CSRF-Token` header, on every method.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from starlette.requests import Request

from services.gateway.limits import client_address
from services.gateway.store import Store
from services.runtime.errors import DomainError
from tollgate.keyvault.v1 import keyvault_pb2

if TYPE_CHECKING:
    from services.gateway.edge import Edge

COOKIE = "tollgate_session"
CSRF_HEADER = "x-csrf-token"
# However busy a session is kept, it ends this long after sign-in.
MAX_AGE = 12 * 3600.0
# A used session's idle timer is pushed back at most this often (one store write per session per minute).
RENEW_EVERY = 60.0

ENDED = DomainError("invalid_api_key", "Your console session has ended: sign in again")
NO_CSRF = DomainError("permission_denied", "A console session is accepted only with its X-CSRF-Token header")
CROSS_SITE = DomainError("permission_denied", "Console requests must come from the console's own origin")


@dataclass(frozen=True)
class Session:
    """What the store keeps for one session: nothing in it is usable without the cookie."""

    user_id: str
    key_id: str
    scopes: list[str]
    sealed_key: str  # base64 of nonce + AES-GCM ciphertext of the API key
    created: float  # unix seconds
    renewed: float

    def to_bytes(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_bytes(cls, raw: bytes) -> Session | None:
        try:
            return cls(**orjson.loads(raw))
        except (orjson.JSONDecodeError, TypeError):
            return None


def _derive(purpose: bytes, session_id: str) -> bytes:
    return hashlib.sha256(b"tollgate-console:" + purpose + b":" + session_id.encode()).digest()


def store_key(session_id: str) -> str:
    return "console:session:" + _derive(b"lookup", session_id).hex()


def csrf_token(session_id: str) -> str:
    """The session's CSRF token: derived from the session id, so only the page holding the cookie learns it."""
    return base64.urlsafe_b64encode(_derive(b"csrf", session_id)).decode().rstrip("=")


def seal(session_id: str, api_key: str) -> str:
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(_derive(b"seal", session_id)).encrypt(nonce, api_key.encode(), b"tollgate-console")
    return base64.b64encode(nonce + sealed).decode()


def unseal(session_id: str, sealed_key: str) -> str | None:
    try:
        raw = base64.b64decode(sealed_key)
        return AESGCM(_derive(b"seal", session_id)).decrypt(raw[:12], raw[12:], b"tollgate-console").decode()
    except (ValueError, InvalidTag):
        return None


def presented(request: Request) -> bool:
    """A console request: the session cookie and no `Authorization` header (a bearer key always wins)."""
    return "authorization" not in request.headers and COOKIE in request.cookies


def same_origin(request: Request) -> None:
    """Refuse what a browser marks as coming from another site, or whose Origin is not this host."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise CROSS_SITE
    origin = request.headers.get("origin")
    if origin is not None and origin.partition("://")[2] != request.headers.get("host", ""):
        raise CROSS_SITE


async def open_session(
    store: Store, api_key: str, principal: keyvault_pb2.Principal, idle_ttl: float
) -> tuple[str, str]:
    """A new session for an authenticated key: (session id for the cookie, CSRF token for the page)."""
    session_id = secrets.token_urlsafe(32)
    now = time.time()
    record = Session(
        user_id=principal.user_id,
        key_id=principal.key_id,
        scopes=list(principal.scopes),
        sealed_key=seal(session_id, api_key),
        created=now,
        renewed=now,
    )
    await store.put(store_key(session_id), record.to_bytes(), min(idle_ttl, MAX_AGE), kept=True)
    return session_id, csrf_token(session_id)


async def load(store: Store, session_id: str) -> Session | None:
    if not session_id:
        return None
    raw = await store.get(store_key(session_id), kept=True)
    record = Session.from_bytes(raw) if raw is not None else None
    if record is not None and time.time() - record.created >= MAX_AGE:
        await store.delete(store_key(session_id), kept=True)
        return None
    return record


async def end(store: Store, session_id: str) -> None:
    if session_id:
        await store.delete(store_key(session_id), kept=True)


def csrf_matches(session_id: str, token: str) -> bool:
    return bool(token) and hmac.compare_digest(token.encode(), csrf_token(session_id).encode())


async def resolve(edge: Edge, request: Request, csrf_required: bool = True) -> tuple[Session, keyvault_pb2.Principal]:
    """The session behind the request's cookie and the principal of its key, authenticated now."""
    same_origin(request)
    session_id = request.cookies.get(COOKIE, "")
    record = await load(edge.store, session_id)
    if record is None:
        raise ENDED
    if csrf_required and not csrf_matches(session_id, request.headers.get(CSRF_HEADER, "")):
        raise NO_CSRF
    api_key = unseal(session_id, record.sealed_key)
    if api_key is None:
        await end(edge.store, session_id)
        raise ENDED
    try:
        principal = await edge.authenticate(api_key, client_address(request))
    except DomainError as err:
        if err.code == "invalid_api_key":
            await end(edge.store, session_id)
            raise ENDED from None
        raise
    await _renew(edge.store, session_id, record, edge.settings.console_session_ttl)
    return record, principal


async def principal(edge: Edge, request: Request) -> keyvault_pb2.Principal:
    """`Edge.principal` for a console request: cookie plus CSRF header, on every method."""
    return (await resolve(edge, request))[1]


async def _renew(store: Store, session_id: str, record: Session, idle_ttl: float) -> None:
    now = time.time()
    if now - record.renewed < RENEW_EVERY:
        return
    left = record.created + MAX_AGE - now
    renewed = Session(**{**asdict(record), "renewed": now})
    await store.put(store_key(session_id), renewed.to_bytes(), min(idle_ttl, left), kept=True)
