"""The gateway's ASGI application: routes from `routes/`, the edge middleware, OpenAI-shaped 404/405."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from services.gateway import metrics, routes
from services.gateway.clients import Clients
from services.gateway.edge import Edge, EdgeMiddleware, error_response
from services.gateway.settings import GatewaySettings
from services.runtime import identity
from services.runtime.channels import close_all
from services.runtime.errors import DomainError


def all_routes() -> list[BaseRoute]:
    found: list[BaseRoute] = []
    for module in pkgutil.iter_modules(routes.__path__):
        found += importlib.import_module(f"{routes.__name__}.{module.name}").ROUTES
    return found


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        err = DomainError("method_not_allowed", f"Method {request.method} is not allowed on {request.url.path}")
        return error_response(err, dict(exc.headers or {}), request.url.path)
    return error_response(
        DomainError("not_found", f"Unknown route {request.method} {request.url.path}"), path=request.url.path
    )


def create_app(settings: GatewaySettings) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Every call to the services is signed as the gateway (`__main__` checked the setting before binding).
        identity.use(identity.signer_for(settings, identity.GATEWAY, settings.gateway_identity_key))
        app.state.edge = gateway = Edge(settings, Clients.connect(settings))
        metrics.serve(settings.host, settings.gateway_metrics_port)
        yield
        await gateway.store.close()
        await close_all()
        metrics.worker_stopped()

    middleware = [Middleware(EdgeMiddleware)]
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=origins,
                allow_methods=["*"],
                allow_headers=["*"],
                expose_headers=["x-request-id"],
            )
        )
    return Starlette(
        routes=all_routes(),
        middleware=middleware,
        exception_handlers={HTTPException: _http_error},
        lifespan=lifespan,
    )


def create_app_from_env() -> Starlette:
    """The app factory each uvicorn worker process calls when `gateway_workers` > 1."""
    from services.gateway.protocol import EdgeProtocol
    from services.runtime import tracing
    from services.runtime.logging import configure
    from services.runtime.settings import load

    settings = load(GatewaySettings)
    configure("gateway", settings.log_level, settings.log_format)
    tracing.setup("gateway", settings)
    EdgeProtocol.configure(settings)
    return create_app(settings)
