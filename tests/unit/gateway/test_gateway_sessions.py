"""Console sessions: hashed ids in the store, the key sealed, CSRF on every use, and every way a session ends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import cast

import pytest
from starlette.requests import Request

from services.gateway import sessions
from services.gateway.clients import Clients
from services.gateway.edge import Edge
from services.gateway.settings import GatewaySettings
from services.gateway.store import Store
from services.runtime.errors import DomainError
from tollgate.keyvault.v1 import keyvault_pb2

KEY = "tg-unit-canary-key-3b1f9a7c5e2d4068"
PRINCIPAL = keyvault_pb2.Principal(user_id="alice", key_id="ak_1", scopes=["user"])


class FakeEdge:
    """What `sessions` needs of `Edge`: the store, the settings and key authentication."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.settings = GatewaySettings()
        self.live = {KEY: PRINCIPAL}
        self.authenticated = 0

    async def authenticate(self, key: str, address: str) -> keyvault_pb2.Principal:
        self.authenticated += 1
        if key not in self.live:
            raise DomainError("invalid_api_key", "Incorrect API key provided")
        return self.live[key]


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield Store()
        return
    shared = Store(request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix"))
    yield shared
    await shared.close()


def request(session_id: str | None = None, csrf: str | None = None, **headers: str) -> Request:
    raw = [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items()]
    if session_id is not None:
        raw.append((b"cookie", f"{sessions.COOKIE}={session_id}".encode()))
    if csrf is not None:
        raw.append((b"x-csrf-token", csrf.encode()))
    raw.append((b"host", b"gateway.test"))
    return Request({"type": "http", "method": "GET", "path": "/v1/credits", "headers": raw, "query_string": b""})


async def opened(store: Store) -> tuple[FakeEdge, str, str]:
    edge = FakeEdge(store)
    session_id, csrf = await sessions.open_session(store, KEY, PRINCIPAL, 1800)
    return edge, session_id, csrf


async def test_the_store_holds_a_hash_of_the_id_and_never_the_key(store: Store) -> None:
    _edge, session_id, csrf = await opened(store)
    raw = await store.get(sessions.store_key(session_id), kept=True)
    assert raw is not None
    assert KEY.encode() not in raw and session_id.encode() not in raw and csrf.encode() not in raw
    assert session_id not in sessions.store_key(session_id)
    if store.redis is None:
        assert all(session_id not in k and KEY.encode() not in v for k, (_, v) in store.kept._values.items())


async def test_cookie_and_csrf_resolve_to_the_keys_principal(store: Store) -> None:
    edge, session_id, csrf = await opened(store)
    record, principal = await sessions.resolve(cast(Edge, edge), request(session_id, csrf))
    assert principal.user_id == "alice" and record.key_id == "ak_1"
    assert edge.authenticated == 1


async def test_a_session_opened_on_one_replica_is_accepted_on_another(redis_url: str, redis_prefix: str) -> None:
    one, two = Store(redis_url, redis_prefix), Store(redis_url, redis_prefix)
    try:
        session_id, csrf = await sessions.open_session(one, KEY, PRINCIPAL, 1800)
        _record, principal = await sessions.resolve(cast(Edge, FakeEdge(two)), request(session_id, csrf))
        assert principal.user_id == "alice"
        await sessions.end(two, session_id)
        assert await sessions.load(one, session_id) is None
    finally:
        await one.close()
        await two.close()


@pytest.mark.parametrize("csrf", [None, "", "not-the-token"])
async def test_the_cookie_alone_or_a_wrong_token_is_refused(store: Store, csrf: str | None) -> None:
    edge, session_id, _csrf = await opened(store)
    with pytest.raises(DomainError) as refused:
        await sessions.resolve(cast(Edge, edge), request(session_id, csrf))
    assert refused.value.code == "permission_denied"
    assert edge.authenticated == 0


async def test_another_sessions_token_is_refused(store: Store) -> None:
    edge, session_id, _csrf = await opened(store)
    _other, other_csrf = await sessions.open_session(store, KEY, PRINCIPAL, 1800)
    with pytest.raises(DomainError) as refused:
        await sessions.resolve(cast(Edge, edge), request(session_id, other_csrf))
    assert refused.value.code == "permission_denied"


@pytest.mark.parametrize(
    "headers",
    [{"sec_fetch_site": "cross-site"}, {"sec_fetch_site": "same-site"}, {"origin": "https://evil.test"}],
)
async def test_requests_from_another_site_are_refused_even_with_the_token(
    store: Store, headers: dict[str, str]
) -> None:
    edge, session_id, csrf = await opened(store)
    with pytest.raises(DomainError) as refused:
        await sessions.resolve(cast(Edge, edge), request(session_id, csrf, **headers))
    assert refused.value.code == "permission_denied"


async def test_same_origin_headers_are_accepted(store: Store) -> None:
    edge, session_id, csrf = await opened(store)
    same = request(session_id, csrf, sec_fetch_site="same-origin", origin="http://gateway.test")
    assert (await sessions.resolve(cast(Edge, edge), same))[1].user_id == "alice"


async def test_an_unknown_or_ended_session_is_refused(store: Store) -> None:
    edge, session_id, csrf = await opened(store)
    with pytest.raises(DomainError) as unknown:
        await sessions.resolve(cast(Edge, edge), request("made-up", sessions.csrf_token("made-up")))
    assert unknown.value.code == "invalid_api_key"
    await sessions.end(store, session_id)
    with pytest.raises(DomainError) as ended:
        await sessions.resolve(cast(Edge, edge), request(session_id, csrf))
    assert ended.value.code == "invalid_api_key"


async def test_a_revoked_key_ends_its_session(store: Store) -> None:
    edge, session_id, csrf = await opened(store)
    edge.live.clear()
    with pytest.raises(DomainError) as refused:
        await sessions.resolve(cast(Edge, edge), request(session_id, csrf))
    assert refused.value.code == "invalid_api_key"
    assert "sign in again" in refused.value.message
    assert await sessions.load(store, session_id) is None


async def test_a_record_does_not_open_with_another_sessions_id(store: Store) -> None:
    _edge, session_id, _csrf = await opened(store)
    record = await sessions.load(store, session_id)
    assert record is not None
    assert sessions.unseal(session_id, record.sealed_key) == KEY
    assert sessions.unseal("another-session-id", record.sealed_key) is None


async def test_sessions_end_at_max_age_and_are_renewed_while_used(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    edge, session_id, csrf = await opened(store)
    began = time.time()
    monkeypatch.setattr(time, "time", lambda: began + sessions.RENEW_EVERY + 1)
    await sessions.resolve(cast(Edge, edge), request(session_id, csrf))
    record = await sessions.load(store, session_id)
    assert record is not None and record.renewed > record.created
    monkeypatch.setattr(time, "time", lambda: began + sessions.MAX_AGE + 1)
    with pytest.raises(DomainError) as refused:
        await sessions.resolve(cast(Edge, edge), request(session_id, csrf))
    assert refused.value.code == "invalid_api_key"


async def test_the_idle_timeout_is_the_store_ttl() -> None:
    store = Store()
    session_id, _csrf = await sessions.open_session(store, KEY, PRINCIPAL, 0.05)
    assert await sessions.load(store, session_id) is not None
    await asyncio.sleep(0.1)
    assert await sessions.load(store, session_id) is None


async def test_edge_principal_takes_the_session_and_a_bearer_key_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    edge = Edge(GatewaySettings(), cast(Clients, None))
    fake = FakeEdge(edge.store)
    monkeypatch.setattr(edge, "authenticate", fake.authenticate)
    session_id, csrf = await sessions.open_session(edge.store, KEY, PRINCIPAL, 1800)
    assert (await edge.principal(request(session_id, csrf))).user_id == "alice"
    with pytest.raises(DomainError) as no_csrf:
        await edge.principal(request(session_id))
    assert no_csrf.value.code == "permission_denied"
    # With a bearer header the cookie is ignored: a wrong key is refused even beside a good session.
    with pytest.raises(DomainError) as bearer:
        await edge.principal(request(session_id, csrf, authorization="Bearer tg-wrong"))
    assert bearer.value.code == "invalid_api_key"
