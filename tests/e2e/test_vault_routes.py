"""The key vault's operator routes and a user's own key list: admins only, masked, fingerprints never keys."""

from __future__ import annotations

import uuid

import httpx
import pytest

from services.launcher import Suite
from tests.e2e.support import bearer, create_key

pytestmark = pytest.mark.e2e


def test_the_audit_log_shows_key_events_to_admins_only(suite: Suite, http: httpx.Client, keys: dict[str, str]) -> None:
    user = f"audit-{uuid.uuid4().hex[:8]}"
    user_key = create_key(suite, user)
    admin = bearer(keys["admin_key"])

    reply = http.get("/v1/admin/audit", params={"user": user, "limit": 10}, headers=admin)
    assert reply.status_code == 200, reply.text
    events = reply.json()["data"]
    assert [e["action"] for e in events] == ["api_key.create"]
    assert events[0]["user_id"] == user and events[0]["outcome"] == "ok" and events[0]["fingerprint"]
    assert user_key not in reply.text

    everyone = http.get("/v1/admin/audit", headers=admin).json()["data"]
    assert len(everyone) > 1 and len({e["user_id"] for e in everyone}) > 1
    assert http.get("/v1/admin/audit", params={"limit": "0"}, headers=admin).status_code == 400

    for path in ("/v1/admin/audit", "/v1/admin/vault/status"):
        refused = http.get(path, headers=bearer(user_key))
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "permission_denied"
        assert http.get(path).status_code == 401


def test_vault_status_lists_the_master_key_versions(http: httpx.Client, keys: dict[str, str]) -> None:
    status = http.get("/v1/admin/vault/status", headers=bearer(keys["admin_key"])).json()
    assert status["active_version"] >= 1
    active = [v for v in status["versions"] if v["active"]]
    assert [v["version"] for v in active] == [status["active_version"]] and active[0]["configured"]
    assert status["total"] == sum(v["rows"] for v in status["versions"])


def test_a_user_lists_only_their_own_keys_masked(suite: Suite, http: httpx.Client) -> None:
    user = f"own-{uuid.uuid4().hex[:8]}"
    first, second = create_key(suite, user), create_key(suite, user)
    create_key(suite, f"other-{uuid.uuid4().hex[:8]}")
    reply = http.get("/v1/keys", headers=bearer(first))
    assert reply.status_code == 200, reply.text
    listed = reply.json()["data"]
    assert {k["user_id"] for k in listed} == {user} and len(listed) == 2
    assert [k["current"] for k in listed].count(True) == 1
    assert first not in reply.text and second not in reply.text
    assert all(k["prefix"].endswith("…") for k in listed)
