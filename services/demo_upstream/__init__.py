"""A fast fake OpenAI-compatible upstream: a demo/test upstream, not a provider.

It backs the demo deployment (``make run`` answers with no internet and no provider key), plays the
provider in the test suite (with failure injection) and is the upstream of the benchmark.

Replies are deterministic. The reply text is ``"echo: " + <text of the last user message>`` (text parts of
a list content are joined with a space); for ``/v1/completions`` it is ``"echo: " + prompt``.

Token rule (other tests rely on it): ``prompt_tokens`` is the number of whitespace-separated words over all
message contents (text parts only), or over the prompt / embedding inputs (token ids: one token each, and the
echo of a token-id prompt is its ids joined by spaces); ``completion_tokens`` is the number
of whitespace-separated words of the reply. A ``max_tokens`` / ``max_completion_tokens`` smaller than that
truncates the reply to that many words (joined by single spaces) with ``finish_reason="length"``.

``POST /v1/responses`` answers OpenAI's Responses shape with the same echo (of the last user input item) and
token rule (``input_tokens``: the words of the message items and ``instructions``; ``output_tokens``: the reply's
words, cut at ``max_output_tokens`` with ``status="incomplete"``); streamed, the typed events from
``response.created`` to ``response.completed`` (which carries ``usage``). ``cut-after-N`` and ``no-usage`` work
there too, and ``usage_details`` fields (``input_tokens_details``, ``output_tokens_details``) merge into its
``usage``; ``script`` and ``usage: worst`` are chat-only.

Failure injection by model name: ``fail-500`` (any ``fail-4xx``/``fail-5xx``: that status with an
OpenAI-shaped error body), ``fail-429`` (adds ``Retry-After: 1``), ``fail-401``, ``garbage`` (200 with a
non-JSON body), ``hang`` (never answers), ``cut-after-N`` (N content chunks, then the connection drops without
``[DONE]``; a non-stream request gets its headers, then the drop), ``end-after-N`` (N content chunks, then the
body ends cleanly without ``[DONE]``), ``slow-MS`` (MS more delay) and
``no-usage`` (no usage at all, even when a stream asks for it). And over HTTP (or ``Upstream.control``):

* ``POST /_control`` ``{"model": "<name>|*", "status": 503, "times": 2}``: the next ``times`` requests for
  that model answer ``status`` (``times`` -1: until reset, 0: clear the rule, default 1);
* ``POST /_control`` ``{"model": "<name>|*", "require_key": "sk-..."}``: 401 unless ``Authorization: Bearer
  sk-...``; ``""`` lifts the requirement;
* ``POST /_control`` ``{"model": "<name>|*", "usage": "worst"}``: report the most a provider could bill
  instead of the token rule: ``prompt_tokens`` = UTF-8 bytes of the same texts (plus the JSON of ``tools``),
  ``completion_tokens`` = ``max_tokens`` (or the reply's words) x ``n``; ``"words"`` goes back to the rule;
* ``POST /_control`` ``{"model": "<name>|*", "script": [reply, ...]}``: the next chat completions for that model
  answer these replies in order (then the echo again; ``[]`` clears). A reply is ``{"content": str | null,
  "tool_calls": [{"name": ..., "arguments": str | object, "id"?: ...} | {"name": ..., "input": str}],
  "finish_reason"?, "usage"?: {...merged over the token rule...}, "logprobs"?}`` (``input``: a custom tool).
  Streams send content in ``chunks`` pieces, then each tool call as OpenAI does (id, type and name first, then
  the arguments in pieces), ``finish_reason`` and ``logprobs`` on the last chunk; ``n`` > 1 repeats the choice.
  The token rule counts the content's words plus one token per 16 bytes of each call's JSON;
* ``POST /_control`` ``{"model": "<name>|*", "usage_details": {...}}``: fields merged into every reply's
  ``usage`` (``prompt_tokens_details.cached_tokens``, ``completion_tokens_details.reasoning_tokens``, …);
  ``{}`` drops them;
* ``POST /_control`` ``{"model": "<name>|*", "answer_model": "/models/llama.gguf"}``: answers (chat, completions,
  embeddings) carry that ``model`` string, as llama.cpp names its file; ``""`` answers with the name asked for;
* ``POST /_control`` ``{"model": "<name>|*", "quirks": [...]}``: how its answers stray from OpenAI's (``[]`` clears):
  ``no_done`` (a stream's body ends cleanly without ``[DONE]``), ``no_finish`` (stream chunks carry no
  ``finish_reason`` at all), ``new_ids`` (every stream chunk has an ``id`` of its own), ``float_only``
  (embeddings come back as floats even when ``base64`` is asked for);
* ``POST /_control`` ``{"reset": true}``: drop every rule, key requirement, usage mode, script, usage details,
  quirk and answer model (not the stats);
* ``GET /_stats``: ``{"requests": {"<path> <model>": n}, "total": n,
  "last_authorization": {"<model>": "Bearer ..."}, "last_fields": {"<model>": ["<body field>", ...]},
  "last_bodies": {"<model>": {...the last body...}}}``;
  ``POST /_stats/reset`` clears it.

``GET /health`` answers ``{"status": "ok"}``.

Order of checks on ``/v1/*``: count in the stats, ``require_key``, ``/_control`` rules (a model's own rule
before ``*``), then the model-name modes. Requests to ``/v1/models`` count under the model ``-``, so only
``*`` settings reach them. ``latency_ms`` (plus ``slow-MS``) delays answers that succeed, before their first
byte; failures answer at once. ``chunk_gap_ms`` separates stream chunks.

In process: ``upstream = await start_upstream(port=0)``; ``upstream.base_url``, ``upstream.control(...)``,
``upstream.stats``, ``await upstream.close()``. As a process: ``python -m services.demo_upstream --help``.
"""

from services.demo_upstream.server import Upstream, start_upstream

__all__ = ["Upstream", "start_upstream"]
