"""Who may call the ledger: the router moves money for requests, the gateway reads for users, admins grant."""

from __future__ import annotations

from services.runtime.access import Access, Grant
from tollgate.credits.v1 import credits_pb2

G, R, OP, ADMIN = Grant.GATEWAY, Grant.ROUTER, Grant.OPERATOR, Grant.ADMIN

ACCESS = Access.of(
    credits_pb2.DESCRIPTOR.services_by_name["Credits"],
    {
        "GetBalance": {G, R, OP},
        "Grant": {ADMIN},
        "Reserve": {R},
        "Settle": {R},
        "SettleBatch": {R},
        "Release": {R},
        # The gateway logs its cache hits (free: the servicer refuses a cost from it).
        "RecordUsage": {R, G},
        "ListTransactions": {G, OP},
        "ListUsage": {G, OP},
        "UsageSummary": {G, OP},
        # Team admins set their team's budgets through the gateway, which checks their team first.
        "SetBudget": {G, ADMIN},
        "ListBudgets": {G, OP},
        "DeleteBudget": {G, ADMIN},
    },
)
