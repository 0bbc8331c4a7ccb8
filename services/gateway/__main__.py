"""`python -m services.gateway`: serve the HTTP API with uvicorn, on the edge's own HTTP/1.1 protocol."""

from __future__ import annotations

from typing import Any

import uvicorn

from services.gateway import metrics
from services.gateway.protocol import EdgeProtocol
from services.gateway.settings import GatewaySettings
from services.runtime import identity, tracing
from services.runtime.logging import configure
from services.runtime.settings import load


def main() -> None:
    settings = load(GatewaySettings)
    configure("gateway", settings.log_level, settings.log_format)
    tracing.setup("gateway", settings)
    # The workers resolve the identity again; resolving it here first stops a bad setting before any binds.
    identity.signer_for(settings, identity.GATEWAY, settings.gateway_identity_key)
    EdgeProtocol.configure(settings)
    # Several workers share one port; their rate-limit windows, idempotency records and cache are shared
    # only through Redis (TOLLGATE_REDIS_URL).
    app: Any = "services.gateway.app:create_app_from_env"
    if settings.gateway_workers <= 1:
        from services.gateway.app import create_app  # with workers, only they need the app (and its memory)

        app = create_app(settings)
    folder = None
    if settings.gateway_workers > 1:
        # The workers count into one fresh folder; this process serves their sum on the metrics port.
        folder = metrics.shared_folder(settings.gateway_metrics_dir)
        metrics.serve_workers(settings.host, settings.gateway_metrics_port, folder)
    try:
        _serve(settings, app)
    finally:
        if folder is not None:
            metrics.remove_folder(folder)


def _serve(settings: GatewaySettings, app: Any) -> None:
    uvicorn.run(
        app,
        factory=settings.gateway_workers > 1,
        workers=settings.gateway_workers,
        host=settings.host,
        port=settings.gateway_port,
        loop="uvloop",
        http=EdgeProtocol,
        timeout_keep_alive=settings.keep_alive_timeout,
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=int(settings.grace_seconds),
        lifespan="on",
    )


if __name__ == "__main__":
    main()
