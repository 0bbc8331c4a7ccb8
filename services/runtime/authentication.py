"""Gateway API keys (`tg-…`) checked by keyvault, a success reused for a few seconds (the revocation delay).

For the services that take a caller's own key: the router's native gRPC API (the gateway keeps its own
cache in `edge.py`, with the same rule). Keys are cached under their SHA-256, never as plaintext.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

import grpc

from services.runtime.channels import metadata
from services.runtime.errors import DomainError, from_rpc_error
from tollgate.keyvault.v1 import keyvault_pb2, keyvault_pb2_grpc


class Authenticator:
    def __init__(self, channel: Callable[[], grpc.aio.Channel], ttl: float, timeout: float) -> None:
        self._channel = channel
        self._ttl = ttl
        self._timeout = timeout
        self._cache: dict[bytes, tuple[float, keyvault_pb2.Principal]] = {}

    async def principal(self, key: str) -> keyvault_pb2.Principal:
        """The owner of `key`, or `invalid_api_key`."""
        if not key:
            raise DomainError("invalid_api_key", "Missing API key: send it as 'authorization: Bearer <key>'")
        digest = hashlib.sha256(key.encode()).digest()
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        stub = keyvault_pb2_grpc.KeyVaultStub(self._channel())
        try:
            found: keyvault_pb2.Principal = await stub.Authenticate(
                keyvault_pb2.AuthenticateRequest(api_key=key), timeout=self._timeout, metadata=metadata()
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, "keyvault") from None
        if self._ttl > 0:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now + self._ttl, found)
        return found
