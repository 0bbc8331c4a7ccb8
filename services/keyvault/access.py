"""Who may call keyvault: the gateway for users' keys, the router alone for plaintext provider keys, admins
for API keys, master keys and the audit log."""

from __future__ import annotations

from services.runtime.access import Access, Grant
from tollgate.keyvault.v1 import keyvault_pb2

G, R, ADMIN = Grant.GATEWAY, Grant.ROUTER, Grant.ADMIN

ACCESS = Access.of(
    keyvault_pb2.DESCRIPTOR.services_by_name["KeyVault"],
    {
        "Authenticate": {G, R},
        "CreateApiKey": {G, ADMIN},  # a team admin, for its members (held to its team by the servicer)
        "ListApiKeys": {G, ADMIN},  # the gateway lists a user's own keys (masked) for that user
        "RevokeApiKey": {G, ADMIN},  # a team admin, for its members' keys (held to its team by the servicer)
        "PutProviderKey": {G},
        "ListProviderKeys": {G},
        "DeleteProviderKey": {G},
        "GetProviderKey": {R},
        "RotateMasterKey": {ADMIN},
        "VaultStatus": {ADMIN},
        "RetireMasterKey": {ADMIN},
        "ListAuditEvents": {ADMIN},
        # Team admins act through the gateway, which passes their team and the servicer holds them to it.
        "UpdateApiKey": {G, ADMIN},
        "CreateTeam": {ADMIN},
        "UpdateTeam": {ADMIN},
        "GetTeam": {G, ADMIN},
        "ListTeams": {ADMIN},
        "SetTeamMember": {G, ADMIN},
        "RemoveTeamMember": {G, ADMIN},
    },
)
