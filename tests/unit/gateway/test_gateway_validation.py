"""Request validation names the offending parameter and lets unknown fields through."""

from __future__ import annotations

from typing import Any

import pytest

from services.gateway.validation import chat, completion, credential, embedding
from services.runtime.errors import DomainError

USER = {"role": "user", "content": "hi"}


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [USER, {"role": "user"}]}, "messages[1].content"),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content[0].text"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"messages": [USER], "temperature": 3}, "temperature"),
        ({"messages": [USER], "temperature": True}, "temperature"),
        ({"messages": [USER], "n": 0}, "n"),
        ({"messages": [USER], "max_tokens": 1.5}, "max_tokens"),
        ({"messages": [USER], "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": [USER], "stream_options": {"include_usage": True}}, "stream_options"),
        ({"messages": [USER], "tools": [{"type": "function"}]}, "tools[0]"),
        ({"messages": [USER], "response_format": {"type": "yaml"}}, "response_format.type"),
        ({"messages": [USER], "model": 3}, "model"),
        ({"messages": [USER], "tools": [{"type": "custom", "custom": {"name": 1}}]}, "tools[0]"),
        ({"messages": [USER], "tool_choice": {"type": "function"}}, "tool_choice"),
        ({"messages": [USER], "tool_choice": "sometimes"}, "tool_choice"),
        ({"messages": [USER], "parallel_tool_calls": 1}, "parallel_tool_calls"),
        ({"messages": [USER], "logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        (
            {"messages": [USER], "response_format": {"type": "json_schema", "json_schema": {}}},
            "response_format.json_schema",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]},
            "messages[0].content[0].image_url",
        ),
    ],
)
def test_chat_refusals_name_the_param(payload: dict[str, Any], param: str) -> None:
    with pytest.raises(DomainError) as raised:
        chat(payload)
    assert raised.value.code == "invalid_request"
    assert raised.value.param == param


def test_valid_chat_with_unknown_fields_passes() -> None:
    chat(
        {
            "model": "x",
            "messages": [
                {"role": "system", "content": "be brief"},
                USER,
                {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
                {"role": "tool", "tool_call_id": "1", "content": "42"},
            ],
            "stream": True,
            "stream_options": {"include_usage": True},
            "tools": [{"type": "function", "function": {"name": "f"}}, {"type": "custom", "custom": {"name": "g"}}],
            "tool_choice": {"type": "custom", "custom": {"name": "g"}},
            "parallel_tool_calls": False,
            "logprobs": True,
            "top_logprobs": 5,
            "response_format": {"type": "json_object"},
            "logit_bias": {"50256": -100},
            "provider_specific": {"anything": True},
        }
    )


def test_completion_and_embedding_required_fields() -> None:
    for check, payload, param in (
        (completion, {}, "prompt"),
        (embedding, {}, "input"),
        (embedding, {"input": []}, "input"),
        (embedding, {"input": "x", "stream": True}, "stream"),
    ):
        with pytest.raises(DomainError) as raised:
            check(payload)
        assert raised.value.param == param
    completion({"prompt": "hello", "max_tokens": 5})
    embedding({"input": ["a", "b"], "encoding_format": "base64"})


@pytest.mark.parametrize("odd", [["user"], {"user": 1}, [], {}])
@pytest.mark.parametrize(
    ("build", "param"),
    [
        (lambda v: {"messages": [{"role": v, "content": "x"}]}, "messages[0].role"),
        (
            lambda v: {"messages": [{"role": "user", "content": [{"type": v, "text": "x"}]}]},
            "messages[0].content[0].type",
        ),
        (lambda v: {"messages": [USER], "response_format": {"type": v}}, "response_format.type"),
    ],
)
def test_a_list_or_object_where_a_name_belongs_is_a_400_naming_it(odd: Any, build: Any, param: str) -> None:
    with pytest.raises(DomainError) as raised:
        chat(build(odd))
    assert raised.value.code == "invalid_request"
    assert raised.value.param == param


@pytest.mark.parametrize("odd", [["float"], {"float": 1}])
def test_an_unhashable_encoding_format_is_a_400(odd: Any) -> None:
    with pytest.raises(DomainError) as raised:
        embedding({"input": "x", "encoding_format": odd})
    assert raised.value.param == "encoding_format"


@pytest.mark.parametrize("key", ["sk-abc\r\nX-Injected: 1", "sk-abc\ndef", "sk-\x00abc", "sk-abc def", "sk-é", ""])
def test_a_credential_with_control_characters_is_refused(key: str) -> None:
    with pytest.raises(DomainError) as raised:
        credential(key, "api_key")
    assert raised.value.code == "invalid_request" and raised.value.param == "api_key"


def test_a_plain_credential_passes() -> None:
    assert credential("sk-proj-AbC_123.xyz~", "api_key") == "sk-proj-AbC_123.xyz~"


def test_chat_takes_custom_tools_as_openai_does() -> None:
    base = {"messages": [{"role": "user", "content": "hi"}]}
    chat({**base, "tools": [{"type": "custom", "custom": {"name": "apply_patch"}}]})
    for bad in ({"type": "custom", "function": {"name": "x"}}, {"type": "custom"}, {"type": "local_shell"}):
        with pytest.raises(DomainError) as refused:
            chat({**base, "tools": [bad]})
        assert refused.value.param == "tools[0]"
