"""`/openapi.json` describes every route the gateway serves, and nothing it does not."""

from __future__ import annotations

from services.gateway.app import create_app
from services.gateway.openapi import document
from services.gateway.settings import GatewaySettings


def test_document_and_routes_agree() -> None:
    app = create_app(GatewaySettings())
    served = {
        (getattr(route, "path", "").replace("{model:path}", "{model}"), method.lower())
        for route in app.routes
        for method in getattr(route, "methods", None) or ()
        if method != "HEAD"
    }
    doc = document()
    described = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert served - described == set(), "routes without a description"
    assert described - served == set(), "descriptions without a route"
    assert doc["openapi"].startswith("3.1")
