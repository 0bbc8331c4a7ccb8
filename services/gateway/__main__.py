"""`python -m services.gateway`: serve the HTTP API with uvicorn."""

from __future__ import annotations

import uvicorn

from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from services.runtime import tracing
from services.runtime.logging import configure
from services.runtime.settings import load


def main() -> None:
    settings = load(GatewaySettings)
    configure("gateway", settings.log_level, settings.log_format)
    tracing.setup("gateway", settings)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.gateway_port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=int(settings.grace_seconds),
        lifespan="on",
    )


if __name__ == "__main__":
    main()
