"""The web console: its page and static assets (shipped in `services/gateway/console/`), sign-in and sign-out.

The page is plain files with a strict Content-Security-Policy (scripts, styles and connections from this
origin only, nothing inline); its JavaScript calls the gateway's own JSON routes with the session cookie and
the `X-CSRF-Token` header (see `sessions.py`). Signing in exchanges a `tg-` key for that session.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.gateway import sessions
from services.gateway.edge import edge, is_admin, json_response, read_json
from services.gateway.limits import client_address
from services.gateway.openapi import extend, operation, path_param
from services.runtime.errors import DomainError
from tollgate.keyvault.v1 import keyvault_pb2

ASSETS = Path(__file__).resolve().parents[1] / "console"
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,100}")
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".md": "text/plain; charset=utf-8",
    ".LICENSE": "text/plain; charset=utf-8",
}
CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)
_SECURITY = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}
_NO_STORE = {"cache-control": "no-store", **_SECURITY}
NOT_ACCEPTED = "That key was not accepted: it is wrong, revoked or expired"


def _asset(name: str, request: Request) -> Response:
    path = ASSETS / name
    kind = _TYPES.get(path.suffix)
    if kind is None or not _NAME.fullmatch(name) or not path.is_file():
        raise DomainError("not_found", "The console has no such file")
    body = path.read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"etag": etag, "cache-control": "no-cache", **_SECURITY}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=kind, headers=headers)


async def page(request: Request) -> Response:
    response = _asset("index.html", request)
    response.headers["cache-control"] = "no-store"
    return response


async def asset(request: Request) -> Response:
    return _asset(request.path_params["name"], request)


def _session_json(principal: keyvault_pb2.Principal, csrf: str) -> dict[str, object]:
    return {
        "object": "console.session",
        "user_id": principal.user_id,
        "key_id": principal.key_id,
        "scopes": list(principal.scopes),
        "admin": is_admin(principal),
        "csrf_token": csrf,
    }


async def sign_in(request: Request) -> Response:
    gateway = edge(request)
    sessions.same_origin(request)
    if request.headers.get("content-type", "").partition(";")[0].strip().lower() != "application/json":
        raise DomainError("invalid_request", 'Send the key as JSON: {"key": "tg-..."}', "key")
    _body, payload = await read_json(request)
    key = payload.get("key")
    if not isinstance(key, str) or not key.strip():
        raise DomainError("invalid_request", "Enter your API key", "key")
    key = key.strip()
    if not key.startswith("tg-"):
        raise DomainError("invalid_request", "That is not a tollgate API key: they start with 'tg-'", "key")
    try:
        principal = await gateway.authenticate(key, client_address(request))
    except DomainError as err:
        if err.code == "invalid_api_key":
            raise DomainError("invalid_api_key", NOT_ACCEPTED, "key") from None
        raise
    await sessions.end(gateway.store, request.cookies.get(sessions.COOKIE, ""))
    session_id, csrf = await sessions.open_session(gateway.store, key, principal, gateway.settings.console_session_ttl)
    response = json_response(_session_json(principal, csrf), 201, _NO_STORE)
    response.set_cookie(
        sessions.COOKIE,
        session_id,
        path="/",
        httponly=True,
        samesite="strict",
        # Behind a proxy that ends TLS the gateway sees http; the proxy's header still marks the cookie Secure.
        secure="https" in (request.url.scheme, request.headers.get("x-forwarded-proto", "")),
    )
    return response


async def current(request: Request) -> Response:
    """The signed-in caller and the session's CSRF token (the cookie alone reads it; it changes nothing)."""
    gateway = edge(request)
    if sessions.COOKIE not in request.cookies:
        raise sessions.ENDED
    _record, principal = await sessions.resolve(gateway, request, csrf_required=False)
    csrf = sessions.csrf_token(request.cookies[sessions.COOKIE])
    return json_response(_session_json(principal, csrf), headers=_NO_STORE)


async def sign_out(request: Request) -> Response:
    gateway = edge(request)
    sessions.same_origin(request)
    session_id = request.cookies.get(sessions.COOKIE, "")
    if await sessions.load(gateway.store, session_id) is not None:
        if not sessions.csrf_matches(session_id, request.headers.get(sessions.CSRF_HEADER, "")):
            raise sessions.NO_CSRF
        await sessions.end(gateway.store, session_id)
    response = json_response({"object": "console.session", "signed_out": True}, headers=_NO_STORE)
    response.delete_cookie(sessions.COOKIE, path="/", httponly=True, samesite="strict")
    return response


_HTML = {"get": operation("The web console (HTML)", auth=False)}
extend("/console", False, _HTML)
extend("/console/assets/{name}", False, {"get": operation("A console asset", auth=False, params=[path_param("name")])})
extend(
    "/console/session",
    False,
    {
        "post": operation('Sign in to the console: body {"key": "tg-..."}; sets the session cookie', auth=False),
        "get": operation("The console session's user, scopes and CSRF token (session cookie)", auth=False),
        "delete": operation("Sign out: ends the session (session cookie and X-CSRF-Token)", auth=False),
    },
)

ROUTES = [
    Route("/console", page, methods=["GET"]),
    Route("/console/assets/{name}", asset, methods=["GET"]),
    Route("/console/session", sign_in, methods=["POST"]),
    Route("/console/session", current, methods=["GET"]),
    Route("/console/session", sign_out, methods=["DELETE"]),
]
