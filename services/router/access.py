"""Who may call the router: the gateway for the users it authenticated, and any caller with its own tg- key
(the native gRPC API), whose caller fields the router then fills in itself."""

from __future__ import annotations

from services.runtime.access import Access, Grant
from tollgate.router.v1 import router_pb2

G, USER, ADMIN = Grant.GATEWAY, Grant.USER, Grant.ADMIN

ACCESS = Access.of(
    router_pb2.DESCRIPTOR.services_by_name["Router"],
    {
        "Chat": {G, USER},
        "ChatStream": {G, USER},
        "Complete": {G, USER},
        "CompleteStream": {G, USER},
        "Embed": {G, USER},
        "ListModels": {G, USER},
        "SelectModel": {G, USER},
        "CountTokens": {G, USER},
        "Respond": {G, USER},
        "RespondStream": {G, USER},
        "ReloadCatalog": {ADMIN},
    },
)
