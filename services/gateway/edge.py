"""What every gateway route shares: authentication, calls to the services, JSON in and out, errors.

Routes stay short: `principal = await edge.principal(request)`, `payload = await read_json(request)`,
`reply = await edge.call(edge.clients.credits.GetBalance, msg, "credits")`, `return json_response(...)`.
A failure anywhere is a `DomainError`; `EdgeMiddleware` turns it into OpenAI's error JSON.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway import metrics, sessions
from services.gateway.clients import Clients
from services.gateway.dialects import anthropic
from services.gateway.limits import AuthFailures, Limiter, ParallelCap, client_address
from services.gateway.replay import Idempotency, ResponseCache
from services.gateway.settings import GatewaySettings
from services.gateway.store import Store
from services.runtime import identity, tracing
from services.runtime.channels import metadata
from services.runtime.errors import DomainError, from_rpc_error
from services.runtime.logging import request_id
from services.runtime.secrets import is_credential
from tollgate.keyvault.v1 import keyvault_pb2

log = logging.getLogger("tollgate.gateway")

T = TypeVar("T")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# A pending Idempotency-Key claim lapses this long after its request's deadline.
PENDING_MARGIN = 10.0


class Edge:
    """The gateway's state: settings, service stubs and the authentication cache."""

    def __init__(self, settings: GatewaySettings, clients: Clients) -> None:
        self.settings = settings
        self.clients = clients
        self._auth: dict[bytes, tuple[float, keyvault_pb2.Principal]] = {}
        self.store = Store(
            settings.redis_url, settings.redis_prefix, settings.cache_max_entries, settings.idempotency_max_entries
        )
        self.limiter = Limiter(settings, self.store)
        self.parallel = ParallelCap(self.store, settings.parallel_lease_seconds, settings.request_timeout + 60)
        self.auth_failures = AuthFailures(settings.auth_failure_limit, self.store)
        self.idempotency = Idempotency(
            self.store, settings.idempotency_ttl, pending_ttl=settings.request_timeout + PENDING_MARGIN
        )
        self.cache = ResponseCache(self.store, settings.cache_ttl, settings.cache_enabled)

    async def call(
        self, method: Callable[..., Awaitable[T]], message: Any, service: str, timeout: float | None = None
    ) -> T:
        try:
            return await method(message, timeout=timeout or self.settings.rpc_timeout_seconds, metadata=metadata())
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, service) from None

    async def principal(self, request: Request) -> keyvault_pb2.Principal:
        """The caller behind the request's bearer key (or console session), cached for `auth_cache_ttl` seconds."""
        if sessions.presented(request):
            return await sessions.principal(self, request)
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if not header and "x-api-key" in request.headers:  # Anthropic's clients send the key so
            scheme, key = "bearer", request.headers["x-api-key"].strip()
        if scheme.lower() != "bearer" or not key:
            raise DomainError(
                "invalid_api_key", "Missing API key: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
            )
        return await self.authenticate(key, client_address(request))

    async def authenticate(self, key: str, address: str) -> keyvault_pb2.Principal:
        """The caller behind `key`; refusals count against `address`, which too many of them lock out."""
        if not is_credential(key):
            await self.auth_failures.admit(address)
            await self.auth_failures.failed(address)
            raise DomainError("invalid_api_key", "Malformed API key: it must be printable ASCII without spaces")
        digest = hashlib.sha256(key.encode()).digest()
        now = time.monotonic()
        cached = self._auth.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        await self.auth_failures.admit(address)
        try:
            found: keyvault_pb2.Principal = await self.call(
                self.clients.keyvault.Authenticate, keyvault_pb2.AuthenticateRequest(api_key=key), "keyvault"
            )
        except DomainError as err:
            if err.code == "invalid_api_key":
                await self.auth_failures.failed(address)
            raise
        if len(self._auth) > 10_000:
            self._auth.clear()
        self._auth[digest] = (now + self.settings.auth_cache_ttl, found)
        return found


def edge(request: Request) -> Edge:
    return request.app.state.edge  # type: ignore[no-any-return]


def is_admin(principal: keyvault_pb2.Principal) -> bool:
    return "admin" in principal.scopes


def require_admin(principal: keyvault_pb2.Principal) -> None:
    """Refuse a caller without the admin scope; from here on the request's internal calls act for this admin."""
    if not is_admin(principal):
        raise DomainError("permission_denied", "This route needs an admin API key")
    identity.act_for(principal.user_id, principal.scopes)


def is_team_admin(principal: keyvault_pb2.Principal) -> bool:
    return bool(principal.team_id) and principal.team_role == "admin"


async def team_members(gateway: Edge, principal: keyvault_pb2.Principal, team_id: str) -> set[str]:
    """The members of a team the caller administers (an admin: any team); any other team reads as not found."""
    if is_admin(principal):
        require_admin(principal)
    elif not (is_team_admin(principal) and team_id == principal.team_id):
        raise DomainError("not_found", f"No team {team_id[:60]!r} of yours", "team")
    identity.act_for(principal.user_id, principal.scopes)  # keyvault holds a team admin's reads to its team
    team: keyvault_pb2.Team = await gateway.call(
        gateway.clients.keyvault.GetTeam, keyvault_pb2.GetTeamRequest(team_id=team_id), "keyvault"
    )
    return {m.user_id for m in team.members if m.team_id in ("", team_id)}


def target_user(request: Request, principal: keyvault_pb2.Principal, param: str = "user") -> str:
    """The user a read route acts on: the caller, or the one an admin names with `?user=`."""
    named = request.query_params.get(param)
    if named and named != principal.user_id:
        require_admin(principal)
        return named
    return principal.user_id


def aliased(path: str, endpoint: Callable[[Request], Awaitable[Response]], methods: list[str]) -> list[Route]:
    """The route under `/v1` and under the seeds' `/api/v1/llm` prefix."""
    return [Route(f"/v1{path}", endpoint, methods=methods), Route(f"/api/v1/llm{path}", endpoint, methods=methods)]


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status_code=status, headers=headers, media_type="application/json")


def error_response(err: DomainError, headers: dict[str, str] | None = None, path: str = "") -> Response:
    """OpenAI's error JSON with the error's status, plus any headers the error carries (`Retry-After`);
    Anthropic's on its Messages routes.

    A service that is away (restarting, its database down) is a 503 clients may retry: it says when.
    """
    extra = {"retry-after": "1"} if err.code == "service_unavailable" else {}
    headers = {**extra, **err.headers, **(headers or {})}
    if anthropic.is_messages_path(path):
        return anthropic.error_response(err, headers)
    return json_response(err.body(), err.kind.http_status, headers)


class BodyTimeout(DomainError):
    """408, and the connection closed: the rest of a late body is not awaited."""

    def __init__(self, seconds: float) -> None:
        super().__init__("request_timeout", f"The request body did not arrive within {seconds:g}s")
        self.headers = {"connection": "close"}


async def read_body(request: Request) -> bytes:
    """The raw body, refused with 413 past `max_body_bytes` without reading it whole, and with 408 when it
    takes longer than `body_timeout` to arrive."""
    settings = edge(request).settings
    limit = settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise DomainError("request_too_large", f"Request body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(settings.body_timeout or None):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise DomainError("request_too_large", f"Request body exceeds {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTimeout(settings.body_timeout) from None
    except ClientDisconnect:
        raise DomainError("invalid_request", "The client went away before sending the whole body") from None
    return b"".join(chunks)


def query_limit(request: Request, default: int = 100, most: int = 1000) -> int:
    """The `?limit=` of a listing: an integer from 1 to `most`, `default` when absent."""
    raw = request.query_params.get("limit", "")
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        raise DomainError("invalid_request", f"'limit' must be an integer from 1 to {most}", "limit")
    return int(raw)


async def read_json(request: Request) -> tuple[bytes, dict[str, Any]]:
    """The body as bytes (relayed verbatim) and parsed; it must be a JSON object."""
    body = await read_body(request)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise DomainError("invalid_request", "The request body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise DomainError("invalid_request", "The request body must be a JSON object")
    return body, payload


class EdgeMiddleware:
    """Request ids in and out, and OpenAI-shaped errors for anything that escapes a route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        rid = supplied if _REQUEST_ID.match(supplied) else uuid.uuid4().hex
        token = request_id.set(rid)
        began = time.perf_counter()
        metrics.request_started.set(began)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid.encode())]
                route = getattr(scope.get("route"), "path", "unmatched")
                metrics.REQUESTS.labels(route, str(message["status"])).inc()
                metrics.LATENCY.labels(route).observe(time.perf_counter() - began)
            await send(message)

        try:
            carrier = (
                {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]} if tracing.enabled() else None
            )
            with (
                identity.acting_for_nobody(),
                tracing.server_span(
                    f"HTTP {scope['method']}", carrier, **{"http.method": scope["method"], "http.target": scope["path"]}
                ),
            ):
                await self.app(scope, receive, send_with_id)
        except DomainError as err:
            if not started:
                await error_response(err, path=scope["path"])(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                failure = DomainError("internal_error", "Internal error")
                await error_response(failure, path=scope["path"])(scope, receive, send_with_id)
        finally:
            request_id.reset(token)
