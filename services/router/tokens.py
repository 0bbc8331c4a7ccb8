"""An upper bound of the tokens a provider bills as a request's input, measured once per request.

A byte-level BPE never makes more tokens than the UTF-8 bytes it reads, so bytes bound every text;
only a model whose catalog entry names its tokenizer (OpenAI's `o200k_base`, `cl100k_base`: exact for
that family) has its message text counted instead, and only up to `TOKENIZE_MAX_BYTES` (the tokenizer
costs about 30 µs per kB; bytes cost nothing). JSON the provider renders into the prompt (tools, schemas,
tool calls) is counted by its bytes with whitespace; images by the model's worst case at their `detail`;
file and audio parts by their data size; allowances cover chat templates and tool-use preambles. A part
whose size cannot be known (a `file_id`, an earlier audio reply) leaves only the context window as bound.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import logging
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import orjson

if TYPE_CHECKING:
    from services.router.catalog import Model

log = logging.getLogger("tollgate.router.tokens")

REQUEST_ALLOWANCE = 64  # start of the template, a default system prompt some templates add, reply priming
MESSAGE_ALLOWANCE = 16  # role markers and separators around each message
PART_ALLOWANCE = 2  # a separator between text parts, or a tokenizer's word-start marker
TOOLS_ALLOWANCE = 640  # the tool-use preamble providers add (Anthropic documents up to 346 tokens)
INPUT_ALLOWANCE = 4  # per completion prompt or embedding input: begin/end tokens
TOKENIZE_MAX_BYTES = 16_384

# OpenAI's image rule: fit in 2048 x 2048, shortest side scaled to 768, then 512-pixel tiles. The most
# tiles any image can take is a 2048 x 768 one: 4 x 2.
IMAGE_MAX_SIDE, IMAGE_SHORT_SIDE, IMAGE_TILE = 2048, 768, 512


def image_tiles_max() -> int:
    return math.ceil(IMAGE_MAX_SIDE / IMAGE_TILE) * math.ceil(IMAGE_SHORT_SIDE / IMAGE_TILE)


IMAGE_BASE_TOKENS, IMAGE_TILE_TOKENS = 85, 170  # gpt-4o, gpt-4.1
IMAGE_HIGH_TOKENS = IMAGE_BASE_TOKENS + IMAGE_TILE_TOKENS * image_tiles_max()  # 1445
IMAGE_LOW_TOKENS = IMAGE_BASE_TOKENS


def json_bytes(value: object) -> int:
    """Bytes of `value` as JSON with whitespace (never fewer than a template's `json.dumps` of it).

    Raises TypeError for a value nested too deeply to be sent on (orjson writes at most 254 levels)."""
    return len(orjson.dumps(value, option=orjson.OPT_INDENT_2))


def utf8(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class _Encoder(Protocol):
    def encode_ordinary(self, text: str) -> list[int]: ...


@dataclass(slots=True)
class Prompt:
    """What a request sends as input. Chat is one unit; each completion prompt or embedding input is one."""

    fixed: int = 0  # tokens known without a model: allowances, token ids
    other_bytes: int = 0  # bytes counted as tokens for every model: JSON, names, file and audio data
    texts: list[str] = field(default_factory=list)  # message text a tokenizer may count instead of its bytes
    text_bytes: int = 0
    images_low: int = 0
    images_high: int = 0
    unbounded: bool = False
    units: list[tuple[int, str | None]] | None = None  # completion/embedding: (bound in bytes, text) per input
    predicted_bytes: int = 0  # a `prediction`: its rejected tokens are billed as output
    messages: int = 0
    _counted: dict[str, int | None] = field(default_factory=dict)
    _unit_counted: dict[str, list[int] | None] = field(default_factory=dict)

    @property
    def images(self) -> int:
        return self.images_low + self.images_high

    def bound(self, model: Model) -> int:
        """At most how many input tokens `model` can bill for this request."""
        window = model.context_window
        if self.units is not None:
            counts = self._unit_counts(model.tokenizer)
            if counts is not None:
                return sum(min(window, n) for n in counts)
            return sum(min(window, size) for size, _ in self.units)
        if self.unbounded:
            return window
        text = self._text_count(model.tokenizer)
        tokens = (
            self.fixed
            + self.other_bytes
            + (self.text_bytes if text is None else text)
            + self.images_low * model.image_tokens_low
            + self.images_high * model.image_tokens_high
        )
        return min(window, tokens)

    def tokenized(self, model: Model) -> bool:
        """Whether `bound(model)` counted the message text with the model's tokenizer (else by its bytes)."""
        return self.units is None and not self.unbounded and self._text_count(model.tokenizer) is not None

    def _text_count(self, tokenizer: str | None) -> int | None:
        if tokenizer is None or self.text_bytes > TOKENIZE_MAX_BYTES:
            return None
        if tokenizer not in self._counted:
            enc = encoding(tokenizer)
            self._counted[tokenizer] = (
                None if enc is None else sum(len(enc.encode_ordinary(t)) + PART_ALLOWANCE for t in self.texts)
            )
        return self._counted[tokenizer]

    def _unit_counts(self, tokenizer: str | None) -> list[int] | None:
        assert self.units is not None
        if tokenizer is None or self.text_bytes > TOKENIZE_MAX_BYTES:
            return None
        if tokenizer not in self._unit_counted:
            enc = encoding(tokenizer)
            self._unit_counted[tokenizer] = (
                None
                if enc is None
                else [
                    size if text is None else len(enc.encode_ordinary(text)) + (size - utf8(text))
                    for size, text in self.units
                ]
            )
        return self._unit_counted[tokenizer]


# Tokenizers: OpenAI's BPE files as litellm ships them (never fetched), loaded off the request path.

TOKENIZERS: dict[str, tuple[str, str, str]] = {
    # name: (file under litellm's bundled folder (sha1 of the download URL), sha256 of the file, split pattern)
    "o200k_base": (
        "fb374d419588a4632f3f557e76b4b70aebbca790",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        "|".join(
            [
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""\p{N}{1,3}""",
                r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
                r"""\s*[\r\n]+""",
                r"""\s+(?!\S)""",
                r"""\s+""",
            ]
        ),
    ),
    "cl100k_base": (
        "9b5ad71b2ce5302211f9c61530b329a4922fc6a4",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
        r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
    ),
}

_encodings: dict[str, _Encoder | None] = {}
_loading: set[str] = set()
_lock = threading.Lock()


def bundled_file(name: str) -> Path | None:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "litellm_core_utils" / "tokenizers" / TOKENIZERS[name][0]
    return path if path.is_file() else None


def load(name: str) -> _Encoder | None:
    """Read tokenizer `name` now (about 0.4 s; 70 MB for o200k_base); None when its file is missing or altered."""
    import tiktoken

    _, digest, pattern = TOKENIZERS[name]
    path = bundled_file(name)
    if path is None:
        log.warning("tokenizer %s is not installed (litellm ships it); input is bounded by bytes", name)
        return None
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != digest:
        log.warning("tokenizer %s at %s is not the expected file; input is bounded by bytes", name, path)
        return None
    ranks = {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in data.splitlines() if line)}
    enc: _Encoder = tiktoken.Encoding(name, pat_str=pattern, mergeable_ranks=ranks, special_tokens={})
    return enc


def _load_in_background(name: str) -> None:
    try:
        found = load(name)
    except Exception:
        log.exception("tokenizer %s failed to load; input is bounded by bytes", name)
        found = None
    with _lock:
        _encodings[name] = found
        _loading.discard(name)


def encoding(name: str) -> _Encoder | None:
    """Tokenizer `name` if it is loaded; the first call starts loading it in a thread (bytes meanwhile)."""
    if name in _encodings:
        return _encodings[name]
    with _lock:
        if name not in _encodings and name not in _loading:
            _loading.add(name)
            threading.Thread(target=_load_in_background, args=(name,), name=f"tokenizer-{name}", daemon=True).start()
    return None


def preload(name: str) -> bool:
    """Load tokenizer `name` in this thread (start-up, tests); whether it is available."""
    if name not in _encodings:
        found = load(name)
        with _lock:
            _encodings[name] = found
    return _encodings[name] is not None


def text_weight(text: str) -> int:
    """Characters of `text` weighed for a typical estimate at four a token: twice its UTF-8 bytes less one,
    so ASCII counts one, an accented letter three, a CJK character five and an emoji seven; CJK, emoji and
    code are not estimated at a quarter of their tokens. Never more than twice the bytes, so an estimate
    stays within the byte bound of a hold."""
    return 2 * len(text.encode("utf-8", "surrogatepass")) - len(text)
