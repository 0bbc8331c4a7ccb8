"""Running low and running out: low-balance headers, then HTTP 402 with the balance and the estimate; free
models still served at zero."""

from __future__ import annotations

import uuid

import httpx
import openai
import pytest

from services.launcher import Suite
from tests.e2e.support import balance_micro, bearer, create_key

PAID = {"model": "echo-paid", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 50}


def _adjust(http: httpx.Client, admin: str, user: str, credits: str) -> None:
    reply = http.post(
        "/v1/admin/credits",
        headers=bearer(admin),
        json={"user_id": user, "amount": credits, "kind": "adjustment", "reason": "e2e"},
    )
    assert reply.status_code == 201, reply.text


def test_low_then_out_of_credits(suite: Suite, http: httpx.Client, keys: dict[str, str]) -> None:
    user = f"spender-{uuid.uuid4().hex[:8]}"
    key = create_key(suite, user)
    start = balance_micro(http, key)
    _adjust(http, keys["admin_key"], user, str(-(start - 5_000_000) / 1_000_000))  # leave 5 credits
    low = http.post("/v1/chat/completions", json=PAID, headers=bearer(key))
    assert low.status_code == 200, low.text
    assert low.headers["x-credits-low"] == "true"
    assert float(low.headers["x-credits-remaining"]) < 5

    _adjust(http, keys["admin_key"], user, str(-(balance_micro(http, key) - 10) / 1_000_000))  # 10 micro-credits
    refused = http.post("/v1/chat/completions", json=PAID, headers=bearer(key))
    assert refused.status_code == 402, refused.text
    error = refused.json()["error"]
    assert (error["code"], error["type"]) == ("insufficient_credits", "insufficient_quota")
    assert "0.00001" in error["message"]  # the balance it has, in credits
    with openai.OpenAI(base_url=suite.base_url, api_key=key, max_retries=0) as sdk:
        with pytest.raises(openai.APIStatusError) as raised:
            sdk.chat.completions.create(model="echo-paid", messages=[{"role": "user", "content": "hello"}])
        assert raised.value.status_code == 402
        free = sdk.chat.completions.create(model="echo-free", messages=[{"role": "user", "content": "still here"}])
    assert free.choices[0].message.content == "echo: still here"
    assert balance_micro(http, key) == 10
