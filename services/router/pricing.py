"""What a request may cost (the hold) and what it did cost (the charge), in integer micro-credits."""

from __future__ import annotations

from decimal import Decimal

from services.router.catalog import Model

DEFAULT_MAX_OUTPUT = 4096


def cost_micro(model: Model, prompt_tokens: int, completion_tokens: int) -> int:
    """ceil((prompt * input price + completion * output price) / 1000); 0 for free models."""
    if model.free:
        return 0
    total = prompt_tokens * model.input_micro_per_1k + completion_tokens * model.output_micro_per_1k
    return -(-total // 1000)


def worst_case_micro(model: Model, prompt_tokens: int, max_tokens: int | None, embedding: bool = False) -> int:
    """The hold for one attempt: the prompt estimate plus the most the model may write."""
    if embedding:
        return cost_micro(model, prompt_tokens, 0)
    room = max(1, model.context_window - prompt_tokens)
    limit = max_tokens or model.max_output_tokens or DEFAULT_MAX_OUTPUT
    return cost_micro(model, prompt_tokens, min(limit, room))


def credits(micro: int) -> str:
    """Micro-credits as a plain decimal number of credits (`0.00006`), never in exponent form."""
    text = format(Decimal(micro).scaleb(-6), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
