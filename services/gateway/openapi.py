"""The gateway's OpenAPI 3.1 description, served at `/openapi.json`.

Request bodies follow OpenAI's published schemas closely enough for generated clients and fuzzers;
a test keeps this document and the application's routes in step.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from services.gateway.edge import json_response

ALIAS_PREFIX = "/api/v1/llm"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_ERRORS = {
    str(code): {"description": text, "content": {"application/json": {"schema": _ref("Error")}}}
    for code, text in (
        (400, "Invalid request"),
        (401, "Missing or invalid API key"),
        (402, "Not enough credits"),
        (403, "Not allowed for this key"),
        (404, "Unknown model or resource"),
        (409, "A request with this Idempotency-Key is in progress"),
        (413, "Request body too large"),
        (422, "Idempotency-Key reused with another body"),
        (429, "Rate limit reached"),
        (502, "The provider failed"),
        (503, "A provider or service is unavailable"),
        (504, "Timed out"),
    )
}

_MESSAGE = {
    "type": "object",
    "required": ["role"],
    # What the roles require (the gateway refuses the rest with 400): a tool result names its call, and
    # the system, developer and user messages carry content.
    "allOf": [
        {"if": {"properties": {"role": {"const": "tool"}}}, "then": {"required": ["tool_call_id"]}},
        {
            "if": {"properties": {"role": {"enum": ["system", "developer", "user"]}}},
            "then": {"required": ["content"], "properties": {"content": {"not": {"type": "null"}}}},
        },
    ],
    "properties": {
        "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool", "function"]},
        "content": {
            "anyOf": [
                {"type": "string"},
                {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["type"],
                        "properties": {"type": {"type": "string"}, "text": {"type": "string"}},
                    },
                },
                {"type": "null"},
            ]
        },
        "name": {"type": "string"},
        "tool_call_id": {"type": "string"},
        "tool_calls": {"type": "array", "items": {"type": "object"}},
    },
}

_SAMPLING = {
    "model": {"type": "string", "description": "A catalog model id or alias; omitted or `auto`: the power level picks"},
    "power_level": {
        "type": "string",
        "enum": ["eco", "balanced", "precision", "custom", "ECO", "BALANCED", "PRECISION", "CUSTOM"],
    },
    "stream": {"type": "boolean"},
    "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "top_p": {"type": "number", "minimum": 0, "maximum": 1},
    "n": {"type": "integer", "minimum": 1, "maximum": 128},
    "max_tokens": {"type": "integer", "minimum": 1},
    "max_completion_tokens": {"type": "integer", "minimum": 1},
    "stop": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 4}]},
    "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
    "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
    "user": {"type": "string"},
    "cache": {"type": "boolean", "description": "tollgate: answer from (and fill) the response cache"},
}

# `stream_options` only with `stream: true`.
_STREAMING = {"required": ["stream"], "properties": {"stream": {"const": True}}}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "param", "code"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                },
            }
        },
    },
    "ChatCompletionRequest": {
        "type": "object",
        "required": ["messages"],
        "dependentSchemas": {"stream_options": _STREAMING},
        "properties": {
            "messages": {"type": "array", "minItems": 1, "items": _MESSAGE},
            "tools": {"type": "array", "items": {"type": "object"}},
            "tool_choice": {},
            "response_format": {
                "type": "object",
                "properties": {"type": {"type": "string", "enum": ["text", "json_object", "json_schema"]}},
            },
            **_SAMPLING,
        },
    },
    "CompletionRequest": {
        "type": "object",
        "required": ["prompt"],
        "dependentSchemas": {"stream_options": _STREAMING},
        "properties": {"prompt": {"anyOf": [{"type": "string"}, {"type": "array"}]}, **_SAMPLING},
    },
    "EmbeddingRequest": {
        "type": "object",
        "required": ["input"],
        "properties": {
            "input": {
                "anyOf": [
                    {"type": "string", "minLength": 1},
                    {"type": "array", "minItems": 1, "items": {"type": "string"}},
                ]
            },
            "model": {"type": "string"},
            "encoding_format": {"type": "string", "enum": ["float", "base64"]},
            "dimensions": {"type": "integer", "minimum": 1},
        },
    },
    "SelectRequest": {
        "type": "object",
        "properties": {
            "messages": {"type": "array", "items": _MESSAGE},
            "task": {"type": "string"},
            "model": {"type": "string"},
            "power_level": _SAMPLING["power_level"],
            "max_tokens": {"type": "integer", "minimum": 1},
        },
    },
    "ResponseCreateRequest": {
        "type": "object",
        "required": ["input"],
        "description": "OpenAI's Responses API, translated onto chat completions (docs/api/responses.md)",
        "properties": {
            "model": _SAMPLING["model"],
            "power_level": _SAMPLING["power_level"],
            "input": {
                "anyOf": [
                    {"type": "string"},
                    {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "type": {
                                    "type": "string",
                                    "enum": [
                                        "message",
                                        "function_call",
                                        "function_call_output",
                                        "custom_tool_call",
                                        "custom_tool_call_output",
                                        "reasoning",
                                    ],
                                },
                                "role": {"type": "string", "enum": ["user", "system", "developer", "assistant"]},
                                "content": {
                                    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]
                                },
                                "call_id": {"type": "string"},
                                "name": {"type": "string"},
                                "arguments": {"type": "string"},
                                "output": {
                                    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]
                                },
                            },
                        },
                    },
                ]
            },
            "instructions": {"type": "string"},
            "stream": {"type": "boolean"},
            "tools": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["type"],
                    "properties": {
                        "type": {"type": "string", "enum": ["function", "custom", "namespace", "web_search"]},
                        "name": {"type": "string"},
                        "parameters": {"type": "object"},
                    },
                },
            },
            "tool_choice": {},
            "parallel_tool_calls": {"type": "boolean"},
            "reasoning": {"type": "object", "properties": {"effort": {"type": "string"}, "summary": {}}},
            "text": {
                "type": "object",
                "properties": {
                    "format": {
                        "type": "object",
                        "properties": {"type": {"type": "string", "enum": ["text", "json_object", "json_schema"]}},
                    }
                },
            },
            "max_output_tokens": {"type": "integer", "minimum": 1},
            "temperature": _SAMPLING["temperature"],
            "top_p": _SAMPLING["top_p"],
            "user": {"type": "string"},
            "store": {
                "type": "boolean",
                "description": "Keep the answer for GET and previous_response_id (default true)",
            },
            "previous_response_id": {"type": "string"},
            "include": {"type": "array", "items": {"type": "string"}},
            "metadata": {"type": "object"},
            "prompt_cache_key": {"type": "string"},
            "truncation": {"type": "string", "enum": ["disabled"]},
        },
    },
    "Response": {
        "type": "object",
        "required": ["id", "object", "created_at", "status", "model", "output"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "response"},
            "created_at": {"type": "integer"},
            "status": {"type": "string", "enum": ["completed", "incomplete", "failed", "in_progress"]},
            "incomplete_details": {"type": ["object", "null"]},
            "model": {"type": "string"},
            "output": {"type": "array", "items": {"type": "object"}},
            "previous_response_id": {"type": ["string", "null"]},
            "usage": {
                "type": ["object", "null"],
                "properties": {
                    "input_tokens": {"type": "integer"},
                    "output_tokens": {"type": "integer"},
                    "total_tokens": {"type": "integer"},
                    "input_tokens_details": {"type": "object"},
                    "output_tokens_details": {"type": "object"},
                },
            },
        },
    },
    "ResponseDeleted": {
        "type": "object",
        "properties": {"id": {"type": "string"}, "object": {"const": "response"}, "deleted": {"type": "boolean"}},
    },
    "Object": {"type": "object"},
    "AnthropicError": {
        "type": "object",
        "required": ["type", "error"],
        "properties": {
            "type": {"const": "error"},
            "error": {
                "type": "object",
                "required": ["type", "message"],
                "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
            },
            "request_id": {"type": "string"},
        },
    },
}

# Anthropic's Messages API (services/gateway/dialects/anthropic.py says what maps where).
_BLOCK = {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}}
_ANTHROPIC_MESSAGES = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "role": {"type": "string", "enum": ["user", "assistant"]},
            "content": {"anyOf": [{"type": "string"}, {"type": "array", "items": _BLOCK}]},
        },
    },
}
_ANTHROPIC_PROMPT = {
    "model": {"type": "string", "description": "A catalog model id or alias"},
    "messages": _ANTHROPIC_MESSAGES,
    "system": {"anyOf": [{"type": "string"}, {"type": "array", "items": _BLOCK}]},
    "tools": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["name", "input_schema"],
            "properties": {
                "name": {"type": "string"},
                "description": {"type": "string"},
                "input_schema": {"type": "object"},
            },
        },
    },
    "tool_choice": {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"type": "string", "enum": ["auto", "any", "tool", "none"]}, "name": {"type": "string"}},
    },
    "thinking": {"type": "object", "description": "Accepted; not sent on (see the Messages API page)"},
}
SCHEMAS["MessagesRequest"] = {
    "type": "object",
    "required": ["model", "messages", "max_tokens"],
    "additionalProperties": False,
    "properties": {
        **_ANTHROPIC_PROMPT,
        "max_tokens": {"type": "integer", "minimum": 1},
        "stream": {"type": "boolean"},
        "stop_sequences": {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 4},
        "temperature": {"type": "number", "minimum": 0, "maximum": 1},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "top_k": {"type": "integer", "minimum": 0, "description": "Accepted; chat has no top_k, so not sent on"},
        "metadata": {"type": "object", "properties": {"user_id": {"type": "string"}}},
        "context_management": {"type": "object", "description": "Accepted; not sent on"},
        "service_tier": {"type": "string", "description": "Accepted; not sent on"},
        "power_level": _SAMPLING["power_level"],
    },
}
SCHEMAS["CountTokensRequest"] = {
    "type": "object",
    "required": ["model", "messages"],
    "additionalProperties": False,
    "properties": _ANTHROPIC_PROMPT,
}
_ANTHROPIC_HEADERS = [
    {"name": "anthropic-version", "in": "header", "required": False, "schema": {"type": "string"}},
    {"name": "anthropic-beta", "in": "header", "required": False, "schema": {"type": "string"}},
]


def anthropic_operation(summary: str, body: str, stream: bool = False) -> dict[str, Any]:
    """An operation of the Messages API: its errors are Anthropic's shape, its key may come as `x-api-key`."""
    op = operation(summary, body=body, stream=stream, params=[*_ANTHROPIC_HEADERS, *_HEADERS[: 2 if stream else 1]])
    for code, response in list(op["responses"].items()):
        if code != "200":
            op["responses"][code] = {**response, "content": {"application/json": {"schema": _ref("AnthropicError")}}}
    op["security"] = [{"bearer": []}, {"x-api-key": []}]
    return op


def operation(
    summary: str,
    *,
    body: str | None = None,
    auth: bool = True,
    stream: bool = False,
    params: list[dict[str, Any]] | None = None,
    reply: str = "Object",
) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": _ref(reply)}}
    if stream:
        content["text/event-stream"] = {"schema": {"type": "string"}}
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {"200": {"description": "OK", "content": content}, **_ERRORS},
    }
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    if not auth:
        op["security"] = []
    if params:
        op["parameters"] = params
    return op


def path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def query(name: str, description: str, kind: str = "string") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": {"type": kind}, "description": description}


_HEADERS = [
    {"name": "X-Power-Level", "in": "header", "required": False, "schema": {"type": "string"}},
    {"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string", "maxLength": 255}},
]

# path → method → operation; paths under /v1 also answer under /api/v1/llm when `aliased` is true.
OPERATIONS: dict[str, tuple[bool, dict[str, dict[str, Any]]]] = {
    "/v1/chat/completions": (
        True,
        {"post": operation("Create a chat completion", body="ChatCompletionRequest", stream=True, params=_HEADERS)},
    ),
    "/v1/completions": (
        True,
        {"post": operation("Create a text completion", body="CompletionRequest", stream=True, params=_HEADERS)},
    ),
    "/v1/embeddings": (True, {"post": operation("Create embeddings", body="EmbeddingRequest", params=_HEADERS)}),
    "/v1/models": (True, {"get": operation("List the catalog's models with tier, price, capabilities, health")}),
    "/v1/models/{model}": (True, {"get": operation("One model", params=[path_param("model")])}),
    "/v1/models/select": (
        True,
        {"post": operation("Choose a model without calling a provider", body="SelectRequest", params=_HEADERS[:1])},
    ),
    "/v1/messages": (True, {"post": anthropic_operation("Create a message (Anthropic)", "MessagesRequest", True)}),
    "/v1/messages/count_tokens": (
        True,
        {"post": anthropic_operation("Count a message's input tokens (Anthropic), free", "CountTokensRequest")},
    ),
    "/v1/responses": (
        True,
        {
            "post": operation(
                "Create a response (OpenAI's Responses API over the chat pipeline)",
                body="ResponseCreateRequest",
                stream=True,
                params=_HEADERS,
                reply="Response",
            )
        },
    ),
    "/v1/responses/{response_id}": (
        True,
        {
            "get": operation("A stored response", params=[path_param("response_id")], reply="Response"),
            "delete": operation(
                "Delete a stored response", params=[path_param("response_id")], reply="ResponseDeleted"
            ),
        },
    ),
    "/v1/responses/{response_id}/input_items": (
        True,
        {"get": operation("The input items of a stored response", params=[path_param("response_id")])},
    ),
    "/health": (False, {"get": operation("Liveness", auth=False)}),
    "/health/live": (False, {"get": operation("Liveness", auth=False)}),
    "/health/ready": (False, {"get": operation("Readiness: the services a request needs", auth=False)}),
    "/api/v1/llm/health": (False, {"get": operation("Health in the seeds' shape", auth=False)}),
    "/openapi.json": (False, {"get": operation("This document", auth=False)}),
}


def extend(path: str, aliased: bool, methods: dict[str, dict[str, Any]]) -> None:
    """Describe more routes (route modules register theirs at import)."""
    OPERATIONS[path] = (aliased, methods)


def document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for path, (aliased, methods) in OPERATIONS.items():
        paths[path] = methods
        if aliased and path.startswith("/v1/"):
            paths[ALIAS_PREFIX + path[3:]] = methods
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tollgate",
            "version": "1.0.0",
            "description": (
                "OpenAI-compatible LLM gateway, with Anthropic's Messages API. Errors are OpenAI-shaped "
                "(Anthropic-shaped on /v1/messages*); amounts are in credits."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "A tg-… API key"},
                "x-api-key": {"type": "apiKey", "in": "header", "name": "x-api-key", "description": "The same key"},
            },
        },
    }


async def openapi(request: Request) -> Response:
    return json_response(document())
