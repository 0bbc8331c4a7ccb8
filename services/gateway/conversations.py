"""Stored Responses API answers (`store: true`): per user, for `responses_ttl` seconds, on the gateway's store.

A record is the response as the client got it plus the conversation that led to it (as input items), so a
`previous_response_id` continues the conversation without walking a chain that may have partly expired.
The user is part of the key: another user's id reads as unknown (404), and ids are 48 random hex digits.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson

from services.gateway.store import Store
from services.runtime.errors import DomainError

log = logging.getLogger("tollgate.gateway.conversations")
# What `Responses` hands out; anything else cannot name a stored response (nor reach into another user's keys).
_ID = re.compile(r"resp_[0-9a-f]{48}")


class Conversations:
    def __init__(self, store: Store, ttl: float) -> None:
        self.store = store
        self.ttl = ttl

    @staticmethod
    def _key(user: str, response_id: str) -> str:
        return f"responses:{user}:{response_id}"

    async def save(self, user: str, response: dict[str, Any], context: list[dict[str, Any]]) -> None:
        try:
            record = orjson.dumps({"response": response, "context": context})
        except orjson.JSONEncodeError:  # nested past what JSON is written with: served, but cannot be kept
            log.warning("response %s not stored: nested too deeply", response["id"])
            return
        await self.store.put(self._key(user, response["id"]), record, self.ttl, kept=True)

    async def find(self, user: str, response_id: str) -> dict[str, Any]:
        """The stored record, or the 404 an unknown id, an expired one and another user's all get."""
        raw = await self.store.get(self._key(user, response_id), kept=True) if _ID.fullmatch(response_id) else None
        if raw is None:
            raise DomainError("not_found", f"No response found with id '{response_id[:80]}'", "response_id")
        record: dict[str, Any] = orjson.loads(raw)
        return record

    async def delete(self, user: str, response_id: str) -> None:
        await self.find(user, response_id)
        await self.store.delete(self._key(user, response_id), kept=True)
