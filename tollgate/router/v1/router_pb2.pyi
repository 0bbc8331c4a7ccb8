from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReloadCatalogRequest(_message.Message):
    __slots__ = ("actor",)
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    actor: str
    def __init__(self, actor: _Optional[str] = ...) -> None: ...

class ReloadCatalogReply(_message.Message):
    __slots__ = ("models", "providers", "digest", "changed")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    models: int
    providers: int
    digest: str
    changed: bool
    def __init__(self, models: _Optional[int] = ..., providers: _Optional[int] = ..., digest: _Optional[str] = ..., changed: _Optional[bool] = ...) -> None: ...

class Caller(_message.Message):
    __slots__ = ("user_id", "key_id", "scopes", "team_id", "team_pays", "allowed_models", "team_allowed_models")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    TEAM_ID_FIELD_NUMBER: _ClassVar[int]
    TEAM_PAYS_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_MODELS_FIELD_NUMBER: _ClassVar[int]
    TEAM_ALLOWED_MODELS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    key_id: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    team_id: str
    team_pays: bool
    allowed_models: _containers.RepeatedScalarFieldContainer[str]
    team_allowed_models: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, user_id: _Optional[str] = ..., key_id: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., team_id: _Optional[str] = ..., team_pays: _Optional[bool] = ..., allowed_models: _Optional[_Iterable[str]] = ..., team_allowed_models: _Optional[_Iterable[str]] = ...) -> None: ...

class InlineKey(_message.Message):
    __slots__ = ("provider", "api_key")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    provider: str
    api_key: str
    def __init__(self, provider: _Optional[str] = ..., api_key: _Optional[str] = ...) -> None: ...

class CompletionRequest(_message.Message):
    __slots__ = ("request_id", "caller", "body", "power_level", "inline_key", "tags", "client_api")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    POWER_LEVEL_FIELD_NUMBER: _ClassVar[int]
    INLINE_KEY_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_API_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    caller: Caller
    body: bytes
    power_level: str
    inline_key: InlineKey
    tags: _containers.ScalarMap[str, str]
    client_api: str
    def __init__(self, request_id: _Optional[str] = ..., caller: _Optional[_Union[Caller, _Mapping]] = ..., body: _Optional[bytes] = ..., power_level: _Optional[str] = ..., inline_key: _Optional[_Union[InlineKey, _Mapping]] = ..., tags: _Optional[_Mapping[str, str]] = ..., client_api: _Optional[str] = ...) -> None: ...

class Outcome(_message.Message):
    __slots__ = ("model", "provider", "deployment", "power_level", "prompt_tokens", "completion_tokens", "cost_micro", "credits_remaining_micro", "credits_low", "byok", "fallbacks", "usage_estimated", "upstream_ms", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "requested_model", "reason", "deployment_id", "region")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    POWER_LEVEL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_MICRO_FIELD_NUMBER: _ClassVar[int]
    CREDITS_REMAINING_MICRO_FIELD_NUMBER: _ClassVar[int]
    CREDITS_LOW_FIELD_NUMBER: _ClassVar[int]
    BYOK_FIELD_NUMBER: _ClassVar[int]
    FALLBACKS_FIELD_NUMBER: _ClassVar[int]
    USAGE_ESTIMATED_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_MS_FIELD_NUMBER: _ClassVar[int]
    CACHE_READ_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REASONING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_MODEL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    model: str
    provider: str
    deployment: str
    power_level: str
    prompt_tokens: int
    completion_tokens: int
    cost_micro: int
    credits_remaining_micro: int
    credits_low: bool
    byok: bool
    fallbacks: int
    usage_estimated: bool
    upstream_ms: float
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    requested_model: str
    reason: str
    deployment_id: str
    region: str
    def __init__(self, model: _Optional[str] = ..., provider: _Optional[str] = ..., deployment: _Optional[str] = ..., power_level: _Optional[str] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., cost_micro: _Optional[int] = ..., credits_remaining_micro: _Optional[int] = ..., credits_low: _Optional[bool] = ..., byok: _Optional[bool] = ..., fallbacks: _Optional[int] = ..., usage_estimated: _Optional[bool] = ..., upstream_ms: _Optional[float] = ..., cache_read_tokens: _Optional[int] = ..., cache_write_tokens: _Optional[int] = ..., reasoning_tokens: _Optional[int] = ..., requested_model: _Optional[str] = ..., reason: _Optional[str] = ..., deployment_id: _Optional[str] = ..., region: _Optional[str] = ...) -> None: ...

class CompletionReply(_message.Message):
    __slots__ = ("body", "outcome")
    BODY_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    body: bytes
    outcome: Outcome
    def __init__(self, body: _Optional[bytes] = ..., outcome: _Optional[_Union[Outcome, _Mapping]] = ...) -> None: ...

class StreamEvent(_message.Message):
    __slots__ = ("chunk", "error", "outcome", "provider", "model")
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    error: bytes
    outcome: Outcome
    provider: str
    model: str
    def __init__(self, chunk: _Optional[bytes] = ..., error: _Optional[bytes] = ..., outcome: _Optional[_Union[Outcome, _Mapping]] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Price(_message.Message):
    __slots__ = ("input_micro_per_1k", "output_micro_per_1k", "cache_read_micro_per_1k", "cache_write_micro_per_1k", "reasoning_micro_per_1k")
    INPUT_MICRO_PER_1K_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_MICRO_PER_1K_FIELD_NUMBER: _ClassVar[int]
    CACHE_READ_MICRO_PER_1K_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_MICRO_PER_1K_FIELD_NUMBER: _ClassVar[int]
    REASONING_MICRO_PER_1K_FIELD_NUMBER: _ClassVar[int]
    input_micro_per_1k: int
    output_micro_per_1k: int
    cache_read_micro_per_1k: int
    cache_write_micro_per_1k: int
    reasoning_micro_per_1k: int
    def __init__(self, input_micro_per_1k: _Optional[int] = ..., output_micro_per_1k: _Optional[int] = ..., cache_read_micro_per_1k: _Optional[int] = ..., cache_write_micro_per_1k: _Optional[int] = ..., reasoning_micro_per_1k: _Optional[int] = ...) -> None: ...

class Model(_message.Message):
    __slots__ = ("id", "aliases", "provider", "upstream", "tier", "price", "context_window", "capabilities", "quality", "health", "max_output_tokens", "free", "byok", "rpm", "tpm")
    ID_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_WINDOW_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    FREE_FIELD_NUMBER: _ClassVar[int]
    BYOK_FIELD_NUMBER: _ClassVar[int]
    RPM_FIELD_NUMBER: _ClassVar[int]
    TPM_FIELD_NUMBER: _ClassVar[int]
    id: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    provider: str
    upstream: str
    tier: str
    price: Price
    context_window: int
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    quality: int
    health: str
    max_output_tokens: int
    free: bool
    byok: bool
    rpm: int
    tpm: int
    def __init__(self, id: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., provider: _Optional[str] = ..., upstream: _Optional[str] = ..., tier: _Optional[str] = ..., price: _Optional[_Union[Price, _Mapping]] = ..., context_window: _Optional[int] = ..., capabilities: _Optional[_Iterable[str]] = ..., quality: _Optional[int] = ..., health: _Optional[str] = ..., max_output_tokens: _Optional[int] = ..., free: _Optional[bool] = ..., byok: _Optional[bool] = ..., rpm: _Optional[int] = ..., tpm: _Optional[int] = ...) -> None: ...

class ListModelsReply(_message.Message):
    __slots__ = ("models", "body")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[Model]
    body: bytes
    def __init__(self, models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ..., body: _Optional[bytes] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("model", "provider", "score", "reason", "tier", "health", "estimated_cost_micro")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_COST_MICRO_FIELD_NUMBER: _ClassVar[int]
    model: str
    provider: str
    score: float
    reason: str
    tier: str
    health: str
    estimated_cost_micro: int
    def __init__(self, model: _Optional[str] = ..., provider: _Optional[str] = ..., score: _Optional[float] = ..., reason: _Optional[str] = ..., tier: _Optional[str] = ..., health: _Optional[str] = ..., estimated_cost_micro: _Optional[int] = ...) -> None: ...

class Selection(_message.Message):
    __slots__ = ("chosen", "power_level", "reason", "candidates", "provider", "estimated_prompt_tokens")
    CHOSEN_FIELD_NUMBER: _ClassVar[int]
    POWER_LEVEL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    chosen: str
    power_level: str
    reason: str
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    provider: str
    estimated_prompt_tokens: int
    def __init__(self, chosen: _Optional[str] = ..., power_level: _Optional[str] = ..., reason: _Optional[str] = ..., candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., provider: _Optional[str] = ..., estimated_prompt_tokens: _Optional[int] = ...) -> None: ...

class TokenCount(_message.Message):
    __slots__ = ("input_tokens", "model", "tokenized")
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TOKENIZED_FIELD_NUMBER: _ClassVar[int]
    input_tokens: int
    model: str
    tokenized: bool
    def __init__(self, input_tokens: _Optional[int] = ..., model: _Optional[str] = ..., tokenized: _Optional[bool] = ...) -> None: ...
