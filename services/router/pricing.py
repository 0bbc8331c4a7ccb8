"""What a request may cost (the hold) and what it did cost (the charge), in integer micro-credits.

A hold is a true worst case: the most input the model can bill for the body (`tokens.Prompt.bound`,
never beyond the context window) plus the most it may write: every choice (`n`, `best_of` and each
completion prompt) at `max_tokens` / `max_completion_tokens` (reasoning tokens included), or at the
model's `max_output_tokens` when the body sets no limit, or at its context window when the catalog
names no limit either.
"""

from __future__ import annotations

from decimal import Decimal

from services.router.catalog import Model
from services.router.request import Request


def cost_micro(model: Model, prompt_tokens: int, completion_tokens: int) -> int:
    """ceil((prompt * input price + completion * output price) / 1000); 0 for free models."""
    if model.free:
        return 0
    total = prompt_tokens * model.input_micro_per_1k + completion_tokens * model.output_micro_per_1k
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
    """The hold for one attempt of `request` on `model`."""
    return cost_micro(model, *hold_tokens(model, request))


def credits(micro: int) -> str:
    """Micro-credits as a plain decimal number of credits (`0.00006`), never in exponent form."""
    text = format(Decimal(micro).scaleb(-6), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
