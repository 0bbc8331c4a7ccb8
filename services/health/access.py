"""Who may call health: the router follows and feeds provider state, the gateway and the operator read it,
admins probe on demand and force providers down or up."""

from __future__ import annotations

from services.runtime.access import Access, Grant
from tollgate.health.v1 import health_pb2

G, R, OP, ADMIN = Grant.GATEWAY, Grant.ROUTER, Grant.OPERATOR, Grant.ADMIN

ACCESS = Access.of(
    health_pb2.DESCRIPTOR.services_by_name["ProviderHealth"],
    {
        "ListProviders": {G, OP},
        "WatchProviders": {R},
        "ReportOutcome": {R},
        "CheckNow": {ADMIN},
        "SetMaintenance": {ADMIN},
        "ListMaintenance": {ADMIN},
    },
)
