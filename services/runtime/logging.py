"""Structured logs that cannot carry a secret.

Every record passes through `redact()`: gateway keys (`tg-…`), provider keys by their shape (`sk-…`,
`AIza…`, `r8_…` and friends), bearer and basic credentials, any value in a key-ish context (`api_key=…`,
`?key=…`, `user:password@` in a URL) and every value registered with `register_secret()` are masked
before formatting, so a secret that slips into a message, an argument or an exception text never
reaches the output.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
import time
from typing import Any

import orjson

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

# Whole tokens that are secrets by their shape: gateway keys, provider keys by prefix (OpenAI and most
# OpenAI-compatible ones `sk-`, Groq `gsk_`, xAI `xai-`, Hugging Face `hf_`, Fireworks `fw_`, Replicate `r8_`,
# NVIDIA `nvapi-`, Perplexity `pplx-`, Cerebras `csk-`), Google `AIza…`, and bearer / basic credentials.
_TOKENS = re.compile(
    r"(?:tg-[A-Za-z0-9_\-]{8,})"
    r"|(?:\b(?:sk|pk|rk|gsk|hf|xai|fw|key|r8|nvapi|pplx|csk)[-_][A-Za-z0-9_\-]{12,})"
    r"|(?:\bAIza[0-9A-Za-z_\-]{30,})"
    r"|(?:(?i:bearer|basic)\s+[A-Za-z0-9._~+/=\-]{8,})"
)
# A value in a key-ish context, whatever its shape: `api_key=…`, `"api_key": "…"`, `x-api-key: …`,
# `Authorization: …`, `password=…`, and `?key=` / `&token=` / `access_token=` in URLs. The name stays.
_CONTEXT_NAMES = (
    r"api[_-]?key|x-api-key|access[_-]?token|refresh[_-]?token|auth[_-]?token|id[_-]?token|client[_-]?secret"
    r"|secret[_-]?key|secret|password|passwd|authorization|token|key|sig|signature"
)
_CONTEXT = re.compile(
    r"(?P<name>(?i:(?<![A-Za-z0-9])(?:" + _CONTEXT_NAMES + r")))"
    r"(?P<sep>\\?[\"']?\s*[:=]\s*\\?[\"']?(?:(?i:bearer|basic|token)\s+)?)"
    r"(?P<value>[^\s\"'\\&,;}<>\[\]]{6,})"
)
# `scheme://user:password@host`: the credentials go, the scheme and host stay.
_URL_CREDENTIALS = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s:@]*:[^/\s@]+@")
_secrets: set[str] = set()
_secret_pattern: re.Pattern[str] | None = None


def register_secret(value: str) -> None:
    """Mask this exact value wherever it appears in a log line from now on (whatever its shape)."""
    global _secret_pattern
    if len(value) < 6 or value in _secrets:
        return
    _secrets.add(value)
    _secret_pattern = re.compile("|".join(re.escape(s) for s in sorted(_secrets, key=len, reverse=True)))


def redact(text: str) -> str:
    if _secret_pattern is not None:
        text = _secret_pattern.sub("[redacted]", text)
    text = _URL_CREDENTIALS.sub(r"\g<scheme>[redacted]@", text)
    text = _CONTEXT.sub(r"\g<name>\g<sep>[redacted]", text)
    return _TOKENS.sub("[redacted]", text)


class _JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        rid = request_id.get()
        if rid:
            entry["request_id"] = rid
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update({k: redact(v) if isinstance(v, str) else v for k, v in extra.items()})
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            entry["error"] = redact(f"{type(exc).__name__}: {exc}")
        return orjson.dumps(entry, default=str).decode()


class _TextFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = redact(super().format(record))
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict) and extra:
            line += " " + redact(" ".join(f"{k}={v}" for k, v in extra.items()))
        return line

    def formatException(self, ei: Any) -> str:
        # Tracebacks stay out of the logs: the exception line says what failed, without frames
        # that may quote local variables.
        return redact(f"{ei[0].__name__}: {ei[1]}")


def configure(service: str, level: str = "INFO", fmt: str = "json") -> logging.Logger:
    """Send every logger of this process through the redacting formatter on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter(service) if fmt == "json" else _TextFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("LiteLLM", "litellm", "httpx", "httpcore", "asyncio", "aiosqlite", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return logging.getLogger(service)


def fields(**values: Any) -> dict[str, Any]:
    """`log.info("settled", extra=fields(hold=...))` attaches structured fields to one line."""
    return {"fields": values}
