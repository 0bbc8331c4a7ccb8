"""Holds are a true worst case: every choice, every billed input, capped by the model's context window."""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import orjson
import pytest

from services.router import tokens
from services.router.catalog import Catalog, Model, parse
from services.router.health_view import HealthView
from services.router.pricing import hold_tokens, worst_case_micro
from services.router.request import Request
from services.router.request import parse as parse_request
from services.router.selection import select
from services.runtime.errors import DomainError

CATALOG = """
version: 1
providers:
  p: {api_base: "http://h/v1"}
models:
  - {id: chat, provider: p, tier: BALANCED, price: {input: 0.01, output: 0.02}, context_window: 1000000,
     max_output_tokens: 4096, capabilities: [chat, completion, tools, json, vision]}
  - {id: small, provider: p, tier: BALANCED, price: {input: 0.01, output: 0.02}, context_window: 8000,
     max_output_tokens: 1000, capabilities: [chat, completion, tools, json]}
  - {id: nolimit, provider: p, tier: BALANCED, price: {input: 0.01, output: 0.02}, context_window: 16000,
     capabilities: [chat]}
  - {id: gpt, provider: p, tier: BALANCED, price: {input: 0.0025, output: 0.01}, context_window: 128000,
     max_output_tokens: 16384, capabilities: [chat, vision, tools, json], tokenizer: o200k_base,
     image_tokens: {low: 85, high: 1445}}
  - {id: embed, provider: p, tier: SPECIALIZED, price: {input: 0.0001, output: 0}, context_window: 8192,
     capabilities: [embeddings]}
"""
LINE: dict[str, Any] = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 50}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return parse(CATALOG, env={})


def req(body: dict[str, Any], route: str = "chat") -> Request:
    return parse_request(route, orjson.dumps(body))  # type: ignore[arg-type]


def held(catalog: Catalog, model: str, body: dict[str, Any], route: str = "chat") -> tuple[int, int]:
    return hold_tokens(catalog.models[model], req(body, route))


def test_n_multiplies_the_output(catalog: Catalog) -> None:
    one = held(catalog, "chat", LINE)
    many = held(catalog, "chat", {**LINE, "n": 128})
    assert one[1] == 50 and many == (one[0], 50 * 128)
    chat = catalog.models["chat"]
    assert worst_case_micro(chat, req({**LINE, "n": 128})) > 60 * worst_case_micro(chat, req(LINE))


@pytest.mark.parametrize("n", [0, 129, -1, 1.5, "2", True, [1]])
def test_n_out_of_range_is_refused(n: object) -> None:
    with pytest.raises(DomainError) as err:
        req({**LINE, "n": n})
    assert (err.value.code, err.value.param) == ("invalid_request", "n")


def test_without_max_tokens_each_choice_may_write_the_models_limit(catalog: Catalog) -> None:
    body = {"messages": LINE["messages"], "n": 3}
    assert held(catalog, "chat", body)[1] == 4096 * 3
    assert held(catalog, "nolimit", body)[1] == 16000 * 3  # no limit in the catalog: the whole window
    assert held(catalog, "small", {**body, "max_tokens": 1_000_000})[1] == 8000 * 3
    both = {**LINE, "max_completion_tokens": 70}
    assert held(catalog, "chat", both)[1] == 70  # the larger of the two limits


def test_tools_schemas_and_tool_traffic_count_as_input(catalog: Catalog) -> None:
    tool = {"type": "function", "function": {"name": "f", "description": "d" * 1000, "parameters": {"type": "object"}}}
    base = held(catalog, "chat", LINE)[0]
    with_tools = held(catalog, "chat", {**LINE, "tools": [tool] * 200})[0]
    assert with_tools > base + 200 * 1000 - 1  # 200 kB of tools: at least their bytes
    schema = {"type": "json_schema", "json_schema": {"name": "s", "schema": {"description": "x" * 5000}}}
    assert held(catalog, "chat", {**LINE, "response_format": schema})[0] > base + 5000
    calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "a" * 3000}}]
    conversation = {
        "messages": [
            {"role": "user", "content": "go", "name": "n" * 500},
            {"role": "assistant", "content": None, "tool_calls": calls},
            {"role": "tool", "tool_call_id": "c1", "content": "r" * 4000},
        ]
    }
    assert held(catalog, "chat", conversation)[0] > 500 + 3000 + 4000


def test_a_200kb_tool_list_is_capped_at_the_context_window(catalog: Catalog) -> None:
    tool = {"type": "function", "function": {"name": "f", "description": "d" * 1000}}
    body = {**LINE, "tools": [tool] * 200}
    assert held(catalog, "small", body)[0] == 8000
    assert 200_000 < held(catalog, "chat", body)[0] < 1_000_000


def test_text_is_bounded_by_its_utf8_bytes_not_its_characters(catalog: Catalog) -> None:
    cjk = "漢字かな交じり文" * 500  # 4000 characters, 12000 bytes
    prompt = held(catalog, "chat", {"messages": [{"role": "user", "content": cjk}], "max_tokens": 1})[0]
    assert prompt >= len(cjk.encode())


def test_images_by_their_worst_case_at_their_detail(catalog: Catalog) -> None:
    assert tokens.IMAGE_HIGH_TOKENS == 85 + 170 * 8  # a 2048 x 768 image: 4 x 2 tiles of 512

    def image(detail: str | None) -> dict[str, Any]:
        url: dict[str, Any] = {"url": "https://example.com/a.png"}
        if detail:
            url["detail"] = detail
        return {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": url}]}], "max_tokens": 1}

    base = held(catalog, "gpt", {"messages": [{"role": "user", "content": []}], "max_tokens": 1})[0]
    assert held(catalog, "gpt", image("low"))[0] - base == 85 + tokens.PART_ALLOWANCE
    for detail in ("high", "auto", None, "original"):
        assert held(catalog, "gpt", image(detail))[0] - base == 1445 + tokens.PART_ALLOWANCE
    # A model that does not say it honours `detail` is held at its high cost even for "low".
    assert held(catalog, "chat", image("low"))[0] - base == 1445 + tokens.PART_ALLOWANCE


def test_file_and_audio_parts_by_their_data_and_references_by_the_window(catalog: Catalog) -> None:
    data = base64.b64encode(b"%PDF" + bytes(30_000)).decode()
    file_part = {"type": "file", "file": {"file_data": data, "filename": "a.pdf"}}
    audio_part = {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}
    for part in (file_part, audio_part):
        prompt = held(catalog, "chat", {"messages": [{"role": "user", "content": [part]}], "max_tokens": 1})[0]
        assert len(data) <= prompt < len(data) + 200
    for unknown in ({"type": "file", "file": {"file_id": "file-abc"}}, {"type": "input_audio", "input_audio": {}}):
        prompt = held(catalog, "chat", {"messages": [{"role": "user", "content": [unknown]}], "max_tokens": 1})[0]
        assert prompt == 1_000_000
    earlier_audio = {"role": "assistant", "audio": {"id": "audio_abc"}}
    assert held(catalog, "chat", {"messages": [earlier_audio], "max_tokens": 1})[0] == 1_000_000


def test_completions_hold_every_prompt_and_every_candidate(catalog: Catalog) -> None:
    body = {"prompt": ["a", "b", "c"], "max_tokens": 10, "n": 2, "best_of": 5}
    prompt, completion = held(catalog, "chat", body, "completion")
    assert completion == 3 * 5 * 10  # best_of candidates per prompt are written, n of them returned
    assert prompt == 3 * (1 + tokens.INPUT_ALLOWANCE)
    with pytest.raises(DomainError) as err:
        req({"prompt": "a", "n": 3, "best_of": 2}, "completion")
    assert err.value.param == "best_of"
    long_prompts = {"prompt": ["x" * 20_000] * 2, "max_tokens": 1, "suffix": "s" * 10}
    assert held(catalog, "small", long_prompts, "completion")[0] == 2 * 8000  # each prompt capped on its own


def test_embeddings_have_no_output_and_no_n(catalog: Catalog) -> None:
    body = {"input": ["one", "two words"], "n": 5}
    request = req(body, "embedding")
    assert "n" not in request.body
    assert hold_tokens(catalog.models["embed"], request) == (3 + 9 + 2 * tokens.INPUT_ALLOWANCE, 0)
    tokens_in = {"input": [[1, 2, 3], [4] * 10_000]}
    assert hold_tokens(catalog.models["embed"], req(tokens_in, "embedding")) == (3 + 8192, 0)


def test_prediction_is_held_as_output(catalog: Catalog) -> None:
    body = {**LINE, "prediction": {"type": "content", "content": "p" * 2000}}
    assert held(catalog, "chat", body)[1] > 50 + 2000


def test_selection_offers_the_worst_case_as_each_candidates_estimate(catalog: Catalog) -> None:
    request = req({**LINE, "model": "chat", "n": 4})
    decision = select(catalog, request, "BALANCED", HealthView())
    for choice in decision.candidates:
        assert choice.estimated_cost_micro == worst_case_micro(choice.model, request)


def test_an_exact_tokenizer_is_used_for_small_text_and_bytes_beyond(catalog: Catalog) -> None:
    if not tokens.preload("o200k_base"):
        pytest.skip("litellm's bundled o200k_base is not installed")
    gpt: Model = catalog.models["gpt"]
    bytes_only = dataclasses.replace(gpt, tokenizer=None)
    text = "The quick brown fox jumps over the lazy dog. " * 200  # 9000 bytes
    body = {"messages": [{"role": "user", "content": text}], "max_tokens": 1}
    exact = len(tokens.encoding("o200k_base").encode_ordinary(text))  # type: ignore[union-attr]
    counted = req(body).prompt.bound(gpt)
    assert exact < counted < exact + 200 < req(body).prompt.bound(bytes_only)
    prompts = req({"prompt": [text[:3000], text[:3000]], "max_tokens": 1}, "completion").prompt
    exact_prompt = len(tokens.encoding("o200k_base").encode_ordinary(text[:3000]))  # type: ignore[union-attr]
    assert 2 * exact_prompt < prompts.bound(gpt) <= 2 * (exact_prompt + tokens.INPUT_ALLOWANCE) < 6000
    large = {"messages": [{"role": "user", "content": text * 3}], "max_tokens": 1}  # past TOKENIZE_MAX_BYTES
    assert req(large).prompt.bound(gpt) == req(large).prompt.bound(bytes_only)


def test_a_200kb_body_of_tools_is_held_whole(catalog: Catalog) -> None:
    """Every model's hold covers the tools a large body carries (their speed is measured in `make bench`)."""
    tool = {"type": "function", "function": {"name": "f", "description": "d" * 1000}}
    raw = orjson.dumps({**LINE, "tools": [tool] * 200})
    bare = orjson.dumps(LINE)
    request, small = parse_request("chat", raw), parse_request("chat", bare)
    for model in catalog.models.values():
        assert hold_tokens(model, request) > hold_tokens(model, small), model.id
