"""One test per client library, each against the running suite with a normal user key: what it sends is
accepted, what tollgate answers (model, streams, tool calls, usage) is what the library expects."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

MODEL = "echo-paid"


class City(BaseModel):
    name: str
    country: str


def test_langchain_openai(base_url: str, key: str, script: Any) -> None:
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(model=MODEL, base_url=base_url, api_key=key, max_retries=0, stream_usage=True)
    reply = chat.invoke("hello langchain")
    assert reply.content == "echo: hello langchain"
    assert reply.response_metadata["model_name"] == MODEL
    streamed = list(chat.stream("hello stream"))
    assert "".join(str(c.content) for c in streamed) == "echo: hello stream"
    assert any(c.usage_metadata for c in streamed)

    def weather(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    script({"tool_calls": [{"name": "weather", "arguments": {"city": "Paris"}}]})
    called = chat.bind_tools([tool(weather)]).invoke("weather in Paris?")
    assert called.tool_calls[0]["name"] == "weather" and called.tool_calls[0]["args"] == {"city": "Paris"}

    script({"tool_calls": [{"name": "City", "arguments": {"name": "Paris", "country": "France"}}]})
    city = chat.with_structured_output(City, method="function_calling").invoke("a city")
    assert city == City(name="Paris", country="France")


def test_openai_agents(base_url: str, key: str, script: Any) -> None:
    from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled
    from openai import AsyncOpenAI

    set_tracing_disabled(True)
    calls: list[str] = []

    def lookup(city: str) -> str:
        """Look a city up."""
        calls.append(city)
        return f"{city} is sunny"

    model = OpenAIChatCompletionsModel(model=MODEL, openai_client=AsyncOpenAI(base_url=base_url, api_key=key))
    agent = Agent(name="weather", instructions="Answer briefly.", model=model, tools=[function_tool(lookup)])
    script({"tool_calls": [{"name": "lookup", "arguments": {"city": "Oslo"}}]}, {"content": "Oslo is sunny"})
    result = Runner.run_sync(agent, "weather in Oslo?")
    assert calls == ["Oslo"] and result.final_output == "Oslo is sunny"

    async def streamed() -> str:
        run = Runner.run_streamed(agent, "hi there")
        async for _ in run.stream_events():
            pass
        return str(run.final_output)

    import asyncio

    assert asyncio.run(streamed()) == "echo: hi there"


def test_pydantic_ai(base_url: str, key: str, script: Any) -> None:
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    model = OpenAIChatModel(MODEL, provider=OpenAIProvider(base_url=base_url, api_key=key))
    plain = Agent(model).run_sync("hello pydantic")
    assert plain.output == "echo: hello pydantic"
    usage = plain.usage() if callable(plain.usage) else plain.usage
    assert usage.input_tokens == 2

    script({"tool_calls": [{"name": "final_result", "arguments": {"name": "Rome", "country": "Italy"}}]})
    typed = Agent(model, output_type=City).run_sync("a city")
    assert typed.output == City(name="Rome", country="Italy")

    async def streamed() -> str:
        async with Agent(model).run_stream("stream me") as run:
            return "".join([piece async for piece in run.stream_text(delta=True)])

    import asyncio

    assert asyncio.run(streamed()) == "echo: stream me"


def test_instructor(base_url: str, key: str, script: Any) -> None:
    import instructor
    from openai import OpenAI

    client = instructor.from_openai(OpenAI(base_url=base_url, api_key=key, max_retries=0), mode=instructor.Mode.TOOLS)
    script({"tool_calls": [{"name": "City", "arguments": {"name": "Lima", "country": "Peru"}}]})
    city = client.chat.completions.create(
        model=MODEL, response_model=City, messages=[{"role": "user", "content": "a city"}], max_retries=0
    )
    assert city.model_dump() == {"name": "Lima", "country": "Peru"}

    # JSON mode: the answer is the message content.
    json_client = instructor.from_openai(
        OpenAI(base_url=base_url, api_key=key, max_retries=0), mode=instructor.Mode.JSON
    )
    script({"content": '{"name": "Oslo", "country": "Norway"}'})
    city = json_client.chat.completions.create(
        model=MODEL, response_model=City, messages=[{"role": "user", "content": "a city"}], max_retries=0
    )
    assert city.model_dump() == {"name": "Oslo", "country": "Norway"}


def test_llm(base_url: str, key: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_USER_PATH", str(tmp_path))
    (tmp_path / "extra-openai-models.yaml").write_text(
        f"- model_id: tollgate\n  model_name: {MODEL}\n  api_base: {base_url}\n  api_key_name: tollgate\n"
    )
    (tmp_path / "keys.json").write_text(json.dumps({"tollgate": key}))
    import llm

    model = llm.get_model("tollgate")
    streamed = model.prompt("hello llm")
    assert streamed.text() == "echo: hello llm"
    whole = model.prompt("hello again", stream=False)
    assert whole.text() == "echo: hello again"
    usage = whole.usage()
    assert usage.input == 2 and usage.output == 3
