"""What a request may cost (the hold) and what it did cost (the charge), in integer micro-credits.

A charge prices each part of the provider's usage at its catalog price: input read back from a prompt
cache at `cache_read`, input written to one at `cache_write`, the rest of the input at `input`;
reasoning at `reasoning`, the rest of the output at `output` (cached and reasoning tokens are parts of
the prompt and completion counts, as OpenAI and litellm report them). The sum is rounded up once.

A hold is a true worst case: the most input the model can bill for the body (`tokens.Prompt.bound`,
never beyond the context window) at the dearest input price (a cache write can cost more than input)
plus the most it may write at the dearer of output and reasoning: every choice (`n`, `best_of` and each
completion prompt) at `max_tokens` / `max_completion_tokens` (reasoning tokens included), or at the
model's `max_output_tokens` when the body sets no limit, or at its context window when the catalog
names no limit either.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from services.router.catalog import Model
from services.router.request import Request


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens a provider billed: `cache_read` and `cache_write` are within `prompt`, `reasoning` within
    `completion`."""

    prompt: int = 0
    completion: int = 0
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0

    def consistent(self) -> Usage:
        """The parts clamped into their totals (a provider's odd report never prices a token twice)."""
        prompt, completion = max(0, self.prompt), max(0, self.completion)
        read = min(max(0, self.cache_read), prompt)
        write = min(max(0, self.cache_write), prompt - read)
        return Usage(prompt, completion, read, write, min(max(0, self.reasoning), completion))


def cost_micro(model: Model, prompt_tokens: int, completion_tokens: int) -> int:
    """The charge of plain input and output tokens (no cached or reasoning parts)."""
    return charge_micro(model, Usage(prompt_tokens, completion_tokens))


def charge_micro(model: Model, usage: Usage) -> int:
    """ceil(sum of each part's tokens x its price per 1k / 1000); 0 for free models."""
    if model.free:
        return 0
    parts = usage.consistent()
    plain_in = parts.prompt - parts.cache_read - parts.cache_write
    plain_out = parts.completion - parts.reasoning
    total = (
        plain_in * model.input_micro_per_1k
        + parts.cache_read * model.cache_read_price
        + parts.cache_write * model.cache_write_price
        + plain_out * model.output_micro_per_1k
        + parts.reasoning * model.reasoning_price
    )
    return -(-total // 1000)


def output_limit(model: Model, max_tokens: int | None) -> int:
    """The most one choice may write: what the body allows, else the model's limit, never past its window."""
    return min(max_tokens or model.max_output_tokens or model.context_window, model.context_window)


def hold_tokens(model: Model, request: Request) -> tuple[int, int]:
    """(input, output) tokens of the worst case of `request` on `model`."""
    window = model.context_window
    # Also at least the typical estimate: it is what is charged when a provider reports no usage.
    prompt = max(request.prompt.bound(model), min(request.prompt_tokens, window))
    if request.route == "embedding":
        return prompt, 0
    completion = output_limit(model, request.max_tokens) * request.choices + request.prompt.predicted_bytes
    return prompt, completion


def worst_case_micro(model: Model, request: Request) -> int:
    """The hold for one attempt of `request` on `model`: every input token at the dearest input price (a
    cache write may cost more than plain input), every output token at the dearer of output and reasoning."""
    if model.free:
        return 0
    prompt, completion = hold_tokens(model, request)
    input_price = max(model.input_micro_per_1k, model.cache_read_price, model.cache_write_price)
    output_price = max(model.output_micro_per_1k, model.reasoning_price)
    return -(-(prompt * input_price + completion * output_price) // 1000)


def credits(micro: int) -> str:
    """Micro-credits as a plain decimal number of credits (`0.00006`), never in exponent form."""
    text = format(Decimal(micro).scaleb(-6), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
