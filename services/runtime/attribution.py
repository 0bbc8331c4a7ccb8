"""Attribution: who and what a request is for, as the usage log stores it and its summary groups it.

Three sources, read and bounded the same way wherever a request enters: the OpenAI `user` field (the
caller's end user), the OpenAI `metadata` map and the `X-Tollgate-Tags` header (`k=v,k2=v2`, values
percent-encoded where they hold `,` `=` or `%`). Tags are a string map of at most `MAX_TAGS` keys (names
of `TAG_NAME`, values up to `MAX_VALUE` printable characters); where the header and `metadata` name the
same key the header wins. Bad input is refused naming the field, never trimmed; tags are tollgate's own
and never reach a provider.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import unquote

from services.runtime.errors import DomainError

HEADER = "x-tollgate-tags"
MAX_TAGS = 16
MAX_NAME = 64
MAX_VALUE = 512
MAX_END_USER = 256
MAX_HEADER = 8192
TAG_NAME = re.compile(r"[A-Za-z0-9_.:/-]{1,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _refused(message: str, param: str) -> DomainError:
    return DomainError("invalid_request", message, param)


def _value(value: object, param: str, limit: int) -> str:
    if not isinstance(value, str):
        raise _refused(f"{param} must be a string", param)
    if len(value) > limit:
        raise _refused(f"{param} must be at most {limit} characters", param)
    if _CONTROL.search(value):
        raise _refused(f"{param} must not contain control characters", param)
    return value


def end_user(value: object) -> str:
    """The OpenAI `user` field: a string of at most `MAX_END_USER` printable characters ('' when absent)."""
    if value is None:
        return ""
    return _value(value, "user", MAX_END_USER)


def tags(value: object, param: str = "metadata") -> dict[str, str]:
    """A tag map (OpenAI's `metadata`, or tags relayed by the gateway), checked; {} when absent."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _refused(f"{param} must be an object of string values", param)
    if len(value) > MAX_TAGS:
        raise _refused(f"{param} may have at most {MAX_TAGS} keys", param)
    out: dict[str, str] = {}
    for name, item in value.items():
        if not isinstance(name, str) or not TAG_NAME.fullmatch(name):
            raise _refused(
                f"{param} keys must be 1 to {MAX_NAME} letters, digits or _ . : / - (got {str(name)[:80]!r})", param
            )
        out[name] = _value(item, f"{param}.{name}", MAX_VALUE)
    return out


def from_header(text: str | None) -> dict[str, str]:
    """The `X-Tollgate-Tags` header: `name=value` pairs separated by commas; {} when absent or blank."""
    if text is None or not text.strip():
        return {}
    param = "X-Tollgate-Tags"
    if len(text) > MAX_HEADER:
        raise _refused(f"{param} must be at most {MAX_HEADER} characters", param)
    found: dict[str, str] = {}
    for pair in text.split(","):
        if not pair.strip():
            continue
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep:
            raise _refused(f"{param} must be name=value pairs separated by commas (got {pair.strip()[:80]!r})", param)
        if name in found:
            raise _refused(f"{param} names {name!r} twice", param)
        try:
            found[name] = unquote(value.strip(), errors="strict")
        except UnicodeDecodeError:
            raise _refused(f"{param}: the value of {name!r} is not percent-encoded UTF-8", param) from None
    return tags(found, param)


def merged(body: Mapping[str, str], header: Mapping[str, str]) -> dict[str, str]:
    """The request's tags: `metadata`'s, then the header's over them; still at most `MAX_TAGS` keys."""
    out = {**body, **header}
    if len(out) > MAX_TAGS:
        raise _refused(f"metadata and X-Tollgate-Tags together may name at most {MAX_TAGS} tags", "metadata")
    return out
