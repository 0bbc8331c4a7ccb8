"""Who may call what: each service declares a rule per method, and `Guard` enforces it before the servicer runs.

A call without a valid identity is refused with UNAUTHENTICATED; a known caller outside the method's rule
with PERMISSION_DENIED. Methods of `grpc.health.v1` and reflection stay open (load balancers probe them);
a tollgate method without a rule is refused, so a new RPC is closed until someone writes its rule.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import grpc
from prometheus_client import Counter

from services.runtime import identity
from services.runtime.errors import DomainError, abort
from services.runtime.identity import Peer, Unauthenticated, Verifier
from tollgate.keyvault.v1 import keyvault_pb2

log = logging.getLogger("tollgate.access")

REFUSED = Counter("tollgate_rpc_refused_total", "Calls refused before their servicer ran", ["method", "code"])


class Grant(StrEnum):
    GATEWAY = "gateway"  # the gateway, for any user (it authenticated them)
    ROUTER = "router"
    OPERATOR = "operator"  # the operator's CLI
    ADMIN = "admin"  # the operator, or the gateway acting for a user whose key has the admin scope
    USER = "user"  # a caller presenting its own tg- key (`authorization: Bearer tg-…`), checked by this service


# The callers whose public keys a service needs for each grant.
_CALLERS = {
    Grant.GATEWAY: {identity.GATEWAY},
    Grant.ROUTER: {identity.ROUTER},
    Grant.OPERATOR: {identity.OPERATOR},
    Grant.ADMIN: {identity.OPERATOR, identity.GATEWAY},
    Grant.USER: set(),
}


@dataclass(frozen=True)
class Rule:
    grants: frozenset[Grant]

    def allows(self, peer: Peer) -> bool:
        if peer.user is not None:
            return Grant.USER in self.grants
        if Grant.ADMIN in self.grants and peer.admin:
            return True
        return peer.service in identity.CALLERS and Grant(peer.service) in self.grants


@dataclass(frozen=True)
class Access:
    """The rules of one gRPC service: method name -> who may call it."""

    service: str  # full name, e.g. tollgate.credits.v1.Credits
    rules: Mapping[str, Rule]

    @classmethod
    def of(cls, descriptor: Any, rules: Mapping[str, Iterable[Grant]]) -> Access:
        """The table for a service descriptor; every method needs a rule, and only its methods may have one."""
        methods = {m.name for m in descriptor.methods}
        if set(rules) != methods:
            missing, unknown = sorted(methods - set(rules)), sorted(set(rules) - methods)
            raise ValueError(f"{descriptor.full_name}: rules missing for {missing}, unknown methods {unknown}")
        return cls(descriptor.full_name, {name: Rule(frozenset(grants)) for name, grants in rules.items()})

    def callers(self) -> set[str]:
        """The services whose public keys verifying this table needs."""
        return {name for rule in self.rules.values() for grant in rule.grants for name in _CALLERS[grant]}

    def accepts_users(self) -> bool:
        return any(Grant.USER in rule.grants for rule in self.rules.values())

    def paths(self) -> dict[str, Rule]:
        return {f"/{self.service}/{name}": rule for name, rule in self.rules.items()}


Authenticate = Callable[[str], Awaitable[keyvault_pb2.Principal]]
# Told of every refusal: (method name, request or None, the caller if it was known, the error).
Refusal = Callable[[str, Any, Peer | None, DomainError], Awaitable[None]]


def _bearer(value: str) -> str:
    scheme, _, key = value.partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""


def _first(metadata: Iterable[tuple[str, Any]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in metadata:
        if isinstance(value, str):
            found.setdefault(key, value)
    return found


class Guard(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """The server interceptor that authenticates every call and applies the method's rule."""

    def __init__(
        self,
        tables: Sequence[Access],
        verifier: Verifier,
        users: Authenticate | None = None,
        on_refused: Refusal | None = None,
    ) -> None:
        self.rules: dict[str, Rule] = {}
        for table in tables:
            self.rules |= table.paths()
        self.verifier = verifier
        self.users = users
        self.on_refused = on_refused
        self._wrapped: dict[str, tuple[Any, Any]] = {}  # method -> (its handler, the guarded handler)

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        handler = await continuation(details)
        method: str = details.method
        if handler is None:
            return None
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        rule = self.rules.get(method)
        if rule is None:
            if identity.audience_of(method) is None:
                return handler  # grpc.health.v1, reflection
            rule = Rule(frozenset())
        guarded = self._guarded(handler, method, rule)
        self._wrapped[method] = (handler, guarded)
        return guarded

    async def identify(self, metadata: Mapping[str, str], rule: Rule) -> Peer:
        """The caller: a service by its token, or (where the rule admits users) the owner of a tg- key."""
        token = metadata.get(identity.TOKEN_HEADER)
        if token:
            try:
                name = self.verifier.caller(token)
            except Unauthenticated as exc:
                raise DomainError("unauthenticated", f"the call's service identity is not valid: {exc}") from None
            if name != identity.GATEWAY:
                return Peer(name)
            scopes = frozenset(s for s in metadata.get(identity.ACTING_SCOPES_HEADER, "").split(",") if s)
            return Peer(name, scopes, metadata.get(identity.ACTING_USER_HEADER, ""))
        key = _bearer(metadata.get("authorization", ""))
        if Grant.USER in rule.grants and self.users is not None:
            if not key:
                raise DomainError(
                    "invalid_api_key", "Missing API key: send it as metadata 'authorization: Bearer <key>'"
                )
            principal = await self.users(key)
            return Peer("", frozenset(principal.scopes), principal.user_id, principal)
        raise DomainError("unauthenticated", "this call carries no service identity")

    async def _admit(self, method: str, rule: Rule, request: Any, context: Any) -> Peer:
        name = method.rsplit("/", 1)[-1]
        peer: Peer | None = None
        try:
            peer = await self.identify(_first(context.invocation_metadata() or ()), rule)
            if not rule.allows(peer):
                raise DomainError("permission_denied", f"{peer.describe()} may not call {name}")
        except DomainError as err:
            REFUSED.labels(name, err.code).inc()
            log.warning("refused %s: %s", name, err.message)
            if self.on_refused is not None:
                with contextlib.suppress(Exception):
                    await self.on_refused(name, request, peer, err)
            await abort(context, err)
            raise  # abort raised already; this line is never reached
        return peer

    def _guarded(self, handler: Any, method: str, rule: Rule) -> Any:
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary_unary(request: Any, context: Any) -> Any:
                token = identity.set_current(await self._admit(method, rule, request, context))
                try:
                    result = inner(request, context)
                    return await result if inspect.isawaitable(result) else result
                finally:
                    identity.reset_current(token)

            return handler._replace(unary_unary=unary_unary)
        if handler.unary_stream is not None:
            streaming = handler.unary_stream

            async def unary_stream(request: Any, context: Any) -> AsyncIterator[Any]:
                token = identity.set_current(await self._admit(method, rule, request, context))
                try:
                    async for item in streaming(request, context):
                        yield item
                finally:
                    # A stream its client left is closed from another context, where this token means nothing.
                    with contextlib.suppress(ValueError):
                        identity.reset_current(token)

            return handler._replace(unary_stream=unary_stream)
        # Client streaming: no tollgate RPC streams requests, so refuse rather than leave one unchecked.
        return _refusing(handler, method)


def _refusing(handler: Any, method: str) -> Any:
    async def refuse(request: Any, context: Any) -> None:
        await abort(context, DomainError("permission_denied", f"{method} is not served"))

    if handler.stream_unary is not None:
        return handler._replace(stream_unary=refuse)
    return handler._replace(stream_stream=refuse)
