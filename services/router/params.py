"""Which body fields may reach a provider: OpenAI's documented parameters, per route, and nothing else.

Where a call goes, with which headers and which credential, comes from the catalog alone. A field that
would change that (`api_base`, `extra_headers`, `api_key`, litellm's call options, …) is refused with a
400 naming it; any other field outside the route's list is dropped (logged at debug), never forwarded.
`checked` runs once when the router reads a body; `outgoing` is the adapters' last filter before a call.
"""

from __future__ import annotations

import logging
from typing import Any

from services.runtime.errors import DomainError

log = logging.getLogger("tollgate.router.params")

# OpenAI's API reference, request bodies of POST /v1/chat/completions, /v1/completions and /v1/embeddings.
CHAT = frozenset(
    {
        "model",
        "messages",
        "audio",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "metadata",
        "modalities",
        "n",
        "parallel_tool_calls",
        "prediction",
        "presence_penalty",
        "prompt_cache_key",
        "prompt_cache_retention",
        "reasoning_effort",
        "response_format",
        "safety_identifier",
        "seed",
        "service_tier",
        "stop",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
        "verbosity",
    }
)
COMPLETION = frozenset(
    {
        "model",
        "prompt",
        "best_of",
        "echo",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "max_tokens",
        "n",
        "presence_penalty",
        "seed",
        "stop",
        "stream",
        "stream_options",
        "suffix",
        "temperature",
        "top_p",
        "user",
    }
)
EMBEDDING = frozenset({"model", "input", "dimensions", "encoding_format", "user"})
# POST /v1/responses, passed through to upstreams that serve it; the gateway owns stored responses, so
# `previous_response_id`, `conversation`, `background` and stored `prompt` templates never travel on.
RESPONSES = frozenset(
    {
        "model",
        "input",
        "instructions",
        "include",
        "max_output_tokens",
        "parallel_tool_calls",
        "prompt_cache_key",
        "prompt_cache_retention",
        "reasoning",
        "safety_identifier",
        "service_tier",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "text",
        "tool_choice",
        "tools",
        "top_p",
        "truncation",
        "user",
    }
)
ALLOWED: dict[str, frozenset[str]] = {
    "chat": CHAT,
    "completion": COMPLETION,
    "embedding": EMBEDDING,
    "responses": RESPONSES,
}
STREAM_OPTIONS = frozenset({"include_usage", "include_obfuscation"})
# Responses tools a passthrough may carry: the caller's own functions. Hosted tools (web search, file search,
# code interpreter, image generation, computer use, MCP) are billed per call or reach beyond the provider.
RESPONSES_TOOLS = frozenset({"function", "custom"})
# Names litellm reads as its own call options although OpenAI documents them too: never passed as keywords.
LITELLM_OWNED = frozenset({"metadata"})

# Fields that would change where or how a call is made (client options of the OpenAI SDK and litellm's
# keyword arguments), or what it is billed at beyond the catalog's price.
STEERING = frozenset(
    {
        "api_base",
        "api_key",
        "api_type",
        "api_version",
        "base_url",
        "azure_ad_token",
        "azure_ad_token_provider",
        "custom_llm_provider",
        "deployment_id",
        "organization",
        "project",
        "extra_body",
        "extra_headers",
        "extra_query",
        "headers",
        "default_headers",
        "default_query",
        "timeout",
        "request_timeout",
        "stream_timeout",
        "num_retries",
        "max_retries",
        "retry_policy",
        "cooldown_time",
        "fallbacks",
        "context_window_fallbacks",
        "content_policy_fallbacks",
        "model_list",
        "mock_response",
        "mock_tool_calls",
        "mock_timeout",
        "callbacks",
        "success_callback",
        "failure_callback",
        "input_callback",
        "service_callback",
        "logger_fn",
        "proxy",
        "proxies",
        "http_client",
        "client",
        "shared_session",
        "ssl_verify",
        "region_name",
        "drop_params",
        "additional_drop_params",
        "allowed_openai_params",
        "input_cost_per_token",
        "output_cost_per_token",
        "input_cost_per_second",
        "output_cost_per_second",
        "base_model",
        "model_info",
        "hf_model_name",
        "custom_prompt_dict",
        "initial_prompt_value",
        "final_prompt_value",
        "roles",
        "bos_token",
        "eos_token",
        "cache",
        "caching",
        "no-log",
        "preset_cache_key",
        "user_continue_message",
        "ensure_alternating_roles",
        "supports_system_message",
        "credentials",
        "token",
        "access_token",
        "auth",
        "endpoint",
        "host",
        "url",
    }
)
_STEERING_PREFIXES = ("litellm_", "aws_", "azure_", "vertex_", "vertexai_", "watsonx_", "openai_", "anthropic_")
_STEERING_WORDS = ("api_key", "api_base", "base_url", "header", "proxy", "credential", "secret", "password", "callback")
# Documented, but priced apart from the catalog's per-token prices: the hold could not cover them.
_PRICED_APART = {"web_search_options": "web search is billed per call, beyond the catalog's token prices"}
_DEFAULT_SERVICE_TIERS = ("auto", "default")


def _refused(name: str, message: str) -> DomainError:
    return DomainError("invalid_request", message, name)


def steers(name: str) -> bool:
    """Whether a body field would redirect or reconfigure the provider call."""
    lowered = name.lower()
    return (
        lowered in STEERING
        or lowered.startswith(_STEERING_PREFIXES)
        or any(word in lowered for word in _STEERING_WORDS)
        or lowered.endswith("_url")
    )


def checked(route: str, body: dict[str, Any]) -> dict[str, Any]:
    """The body as it may travel on: steering fields refused (400 naming the field), unknown ones dropped."""
    allowed = ALLOWED[route]
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for name, value in body.items():
        if name in allowed:
            kept[name] = value
        elif steers(name):
            raise _refused(
                name, f"'{name}' is not accepted: the catalog alone decides where and how a provider is called"
            )
        elif name in _PRICED_APART:
            raise _refused(name, f"'{name}' is not supported: {_PRICED_APART[name]}")
        else:
            dropped.append(name)
    tier = kept.get("service_tier")
    if tier is not None and tier not in _DEFAULT_SERVICE_TIERS:
        raise _refused("service_tier", "'service_tier' must be 'auto' or 'default': the catalog prices that tier")
    if route == "responses":
        _responses_tools(kept.get("tools"))
    options = kept.get("stream_options")
    if isinstance(options, dict) and not options.keys() <= STREAM_OPTIONS:
        kept["stream_options"] = {k: v for k, v in options.items() if k in STREAM_OPTIONS}
    if dropped:
        log.debug("fields dropped from a %s body (not OpenAI parameters): %s", route, ", ".join(sorted(dropped)))
    return kept


def _responses_tools(tools: object) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise _refused("tools", "'tools' must be an array")
    for i, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind not in RESPONSES_TOOLS:
            raise _refused(
                f"tools[{i}]", f"tool type {kind!r} is not supported: only function and custom tools are passed through"
            )


def outgoing(route: str, payload: dict[str, Any], litellm: bool = False) -> dict[str, Any]:
    """Only the route's documented parameters, whatever the caller handed an adapter."""
    allowed = ALLOWED[route] - LITELLM_OWNED if litellm else ALLOWED[route]
    return {k: v for k, v in payload.items() if k in allowed}
