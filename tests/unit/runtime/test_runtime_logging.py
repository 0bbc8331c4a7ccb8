"""Redaction canaries: every secret format the suite may meet is masked in a log line, the rest is kept."""

from __future__ import annotations

import io
import logging
import uuid

import orjson
import pytest

from services.runtime.logging import configure, redact, register_secret

# Made-up keys in each provider's real shape.
GOOGLE = "AIzaSyD" + "x7Kq2Lm9Np4Rs6Tv8Wy0Zb3Cd5Ef7Gh1J"
CANARIES = {
    "gateway key": "tg-Qm3kX9vL2pR7sT1wY5zA8bC4dE6fG0hJ",
    "openai": "sk-proj-Abc123Def456Ghi789Jkl012Mno345",
    "anthropic": "sk-ant-api03-Abc123Def456Ghi789Jkl012",
    "groq": "gsk_Abc123Def456Ghi789Jkl012Mno345Pqr678",
    "xai": "xai-Abc123Def456Ghi789Jkl012Mno345Pqr678",
    "google": GOOGLE,
    "replicate": "r8_Abc123Def456Ghi789Jkl012Mno345Pqr678",
    "nvidia": "nvapi-Abc123Def456Ghi789Jkl012Mno345Pqr678-_x",
    "perplexity": "pplx-Abc123Def456Ghi789Jkl012Mno345Pqr678",
    "hugging face": "hf_Abc123Def456Ghi789Jkl012Mno345",
}
PLAIN_HEX = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b"
PLAIN_ALNUM = "Zx81Qw72Er63Ty54Ui45Op36"


@pytest.mark.parametrize("name", sorted(CANARIES))
@pytest.mark.parametrize(
    "template",
    [
        "upstream said: invalid key {} (401)",
        "Authorization: Bearer {}",
        '{{"error": {{"message": "Incorrect API key provided: {}"}}}}',
        "POST https://api.example.com/v1/chat?model=x&key={} failed",
    ],
)
def test_every_known_key_shape_is_masked(name: str, template: str) -> None:
    line = redact(template.format(CANARIES[name]))
    assert CANARIES[name] not in line
    assert "[redacted]" in line


@pytest.mark.parametrize(
    "line",
    [
        f"api_key={PLAIN_HEX}",
        f"api-key: {PLAIN_ALNUM}",
        f'{{"api_key": "{PLAIN_HEX}"}}',
        f'{{\\"api_key\\": \\"{PLAIN_HEX}\\"}}',
        f"x-api-key: {PLAIN_ALNUM}",
        f"X-Api-Key={PLAIN_HEX}",
        f"apiKey: '{PLAIN_ALNUM}'",
        f"https://generativelanguage.googleapis.com/v1beta/models?key={PLAIN_ALNUM}",
        f"https://host/cb?state=1&token={PLAIN_HEX}&x=2",
        f"https://host/cb?access_token={PLAIN_ALNUM}",
        f"GET /v1/x?api_key={PLAIN_HEX} HTTP/1.1",
        f"authorization: Basic {PLAIN_ALNUM}",
        f"password={PLAIN_ALNUM}",
        f"client_secret: {PLAIN_HEX}",
    ],
)
def test_any_value_in_a_key_context_is_masked(line: str) -> None:
    out = redact(line)
    assert PLAIN_HEX not in out and PLAIN_ALNUM not in out
    assert "[redacted]" in out


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("https://alice:s3cretPassw0rd@api.example.com/v1", "https://[redacted]@api.example.com/v1"),
        ("redis://:hunter2hunter2@redis:6379/0", "redis://[redacted]@redis:6379/0"),
        ("postgresql://tollgate:pgpass123@db/tollgate", "postgresql://[redacted]@db/tollgate"),
    ],
)
def test_credentials_in_urls_are_masked(url: str, kept: str) -> None:
    assert redact(f"cannot reach {url}") == f"cannot reach {kept}"


def test_a_registered_secret_of_any_shape_is_masked() -> None:
    value = "plain" + uuid.uuid4().hex
    assert redact(f"failed with {value}") == f"failed with {value}"
    register_secret(value)
    assert redact(f"failed with {value}!") == "failed with [redacted]!"


@pytest.mark.parametrize(
    "line",
    [
        "settled hold 1234 for user alice: 1500 micro-credits",
        "catalog catalog/demo.yaml: 5 models, 3 providers, default power level BALANCED",
        "attempt on fake failed: fake answered HTTP 500: boom",
        "request_id=9f86d081884c7d659a2feaa0c55ad015 route=/v1/chat/completions status=200",
        "key_id=k_123 masked=sk-...abcd",
    ],
)
def test_ordinary_lines_are_kept(line: str) -> None:
    assert redact(line) == line


def test_the_formatter_masks_message_arguments_and_exceptions() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    try:
        configure("test", "INFO", "json")
        handler = root.handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(stream)
        try:
            raise RuntimeError(f"upstream echoed key={PLAIN_HEX}")
        except RuntimeError:
            logging.getLogger("tollgate.test").exception("call to %s failed", f"https://x/v1?key={GOOGLE}")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    entry = orjson.loads(stream.getvalue().splitlines()[-1])
    assert GOOGLE not in entry["msg"] and PLAIN_HEX not in entry["error"]
