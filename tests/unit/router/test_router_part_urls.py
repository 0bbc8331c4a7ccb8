"""The litellm adapter refuses part URLs that would make the router fetch from its own network."""

from __future__ import annotations

from typing import Any

import pytest

from services.router.adapters.litellm import require_public_urls
from services.runtime.errors import DomainError


def _image(url: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]}


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:50053/",
        "http://localhost/admin",
        "http://169.254.169.254/latest/meta-data/",
        "https://10.0.0.7/x.png",
        "http://[::1]/x.png",
        "http://0.0.0.0/",
        "HTTP://192.168.1.1/x.png",
        "http://no-such-host.invalid/x.png",
    ],
)
async def test_a_url_into_the_routers_own_network_is_refused(url: str) -> None:
    with pytest.raises(DomainError) as refused:
        await require_public_urls(_image(url))
    assert (refused.value.code, refused.value.param) == ("invalid_request", "messages")


@pytest.mark.parametrize(
    "payload",
    [
        _image("data:image/png;base64,iVBORw0KGgo="),
        _image("https://93.184.216.34/cat.png"),
        {"messages": [{"role": "user", "content": "http://127.0.0.1/ in plain text is only text"}]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "http://127.0.0.1/"}]}]},
    ],
)
async def test_inline_data_public_addresses_and_text_pass(payload: dict[str, Any]) -> None:
    await require_public_urls(payload)
