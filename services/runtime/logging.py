"""Structured logs that cannot carry a secret.

Every record passes through `redact()`: gateway keys (`tg-…`), provider keys (`sk-…` and friends),
bearer tokens and any value registered with `register_secret()` are masked before formatting, so a
secret that slips into a message, an argument or an exception text never reaches the output.
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

_PATTERNS = re.compile(
    r"(?:tg-[A-Za-z0-9_\-]{8,})"
    r"|(?:\b(?:sk|pk|rk|gsk|hf|xai|fw|key)[-_][A-Za-z0-9_\-]{12,})"
    r"|(?:(?i:bearer)\s+[A-Za-z0-9._~+/=\-]{8,})"
    r"|(?:(?i:api[_-]?key)[\"']?\s*[:=]\s*[\"']?[^\s\"',}]{6,})"
)
_secrets: set[str] = set()
_secret_pattern: re.Pattern[str] | None = None


def register_secret(value: str) -> None:
    """Mask this exact value wherever it appears in a log line from now on."""
    global _secret_pattern
    if len(value) < 6 or value in _secrets:
        return
    _secrets.add(value)
    _secret_pattern = re.compile("|".join(re.escape(s) for s in sorted(_secrets, key=len, reverse=True)))


def redact(text: str) -> str:
    if _secret_pattern is not None:
        text = _secret_pattern.sub("[redacted]", text)
    return _PATTERNS.sub("[redacted]", text)


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
