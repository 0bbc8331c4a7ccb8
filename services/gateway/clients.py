"""Stubs of the internal services, on the process-wide persistent channels."""

from __future__ import annotations

from dataclasses import dataclass

from services.gateway.settings import GatewaySettings
from services.runtime.channels import channel
from tollgate.credits.v1 import credits_pb2_grpc
from tollgate.health.v1 import health_pb2_grpc
from tollgate.keyvault.v1 import keyvault_pb2_grpc
from tollgate.router.v1 import router_pb2_grpc


@dataclass(frozen=True)
class Clients:
    router: router_pb2_grpc.RouterStub
    credits: credits_pb2_grpc.CreditsStub
    keyvault: keyvault_pb2_grpc.KeyVaultStub
    health: health_pb2_grpc.ProviderHealthStub

    @classmethod
    def connect(cls, settings: GatewaySettings) -> Clients:
        return cls(
            router=router_pb2_grpc.RouterStub(channel(settings.router_addr)),
            credits=credits_pb2_grpc.CreditsStub(channel(settings.credits_addr)),
            keyvault=keyvault_pb2_grpc.KeyVaultStub(channel(settings.keyvault_addr)),
            health=health_pb2_grpc.ProviderHealthStub(channel(settings.health_addr)),
        )
