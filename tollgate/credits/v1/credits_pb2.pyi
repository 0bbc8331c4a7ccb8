from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Budget(_message.Message):
    __slots__ = ("budget_id", "scope", "scope_id", "period", "timezone", "limit_micro", "alert_percents", "soft_limit_micro", "spent_micro", "reserved_micro", "period_start_unix_ms", "resets_unix_ms", "actor")
    BUDGET_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SCOPE_ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_MICRO_FIELD_NUMBER: _ClassVar[int]
    ALERT_PERCENTS_FIELD_NUMBER: _ClassVar[int]
    SOFT_LIMIT_MICRO_FIELD_NUMBER: _ClassVar[int]
    SPENT_MICRO_FIELD_NUMBER: _ClassVar[int]
    RESERVED_MICRO_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    RESETS_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    budget_id: str
    scope: str
    scope_id: str
    period: str
    timezone: str
    limit_micro: int
    alert_percents: _containers.RepeatedScalarFieldContainer[int]
    soft_limit_micro: int
    spent_micro: int
    reserved_micro: int
    period_start_unix_ms: int
    resets_unix_ms: int
    actor: str
    def __init__(self, budget_id: _Optional[str] = ..., scope: _Optional[str] = ..., scope_id: _Optional[str] = ..., period: _Optional[str] = ..., timezone: _Optional[str] = ..., limit_micro: _Optional[int] = ..., alert_percents: _Optional[_Iterable[int]] = ..., soft_limit_micro: _Optional[int] = ..., spent_micro: _Optional[int] = ..., reserved_micro: _Optional[int] = ..., period_start_unix_ms: _Optional[int] = ..., resets_unix_ms: _Optional[int] = ..., actor: _Optional[str] = ...) -> None: ...

class ListBudgetsRequest(_message.Message):
    __slots__ = ("scope", "scope_id", "budget_id")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SCOPE_ID_FIELD_NUMBER: _ClassVar[int]
    BUDGET_ID_FIELD_NUMBER: _ClassVar[int]
    scope: str
    scope_id: str
    budget_id: str
    def __init__(self, scope: _Optional[str] = ..., scope_id: _Optional[str] = ..., budget_id: _Optional[str] = ...) -> None: ...

class ListBudgetsReply(_message.Message):
    __slots__ = ("budgets",)
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    budgets: _containers.RepeatedCompositeFieldContainer[Budget]
    def __init__(self, budgets: _Optional[_Iterable[_Union[Budget, _Mapping]]] = ...) -> None: ...

class DeleteBudgetRequest(_message.Message):
    __slots__ = ("budget_id", "actor")
    BUDGET_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    budget_id: str
    actor: str
    def __init__(self, budget_id: _Optional[str] = ..., actor: _Optional[str] = ...) -> None: ...

class DeleteBudgetReply(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class Balance(_message.Message):
    __slots__ = ("user_id", "balance_micro", "reserved_micro", "available_micro", "low", "low_threshold_micro", "tier", "overdraft_micro")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    BALANCE_MICRO_FIELD_NUMBER: _ClassVar[int]
    RESERVED_MICRO_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_MICRO_FIELD_NUMBER: _ClassVar[int]
    LOW_FIELD_NUMBER: _ClassVar[int]
    LOW_THRESHOLD_MICRO_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    OVERDRAFT_MICRO_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    balance_micro: int
    reserved_micro: int
    available_micro: int
    low: bool
    low_threshold_micro: int
    tier: str
    overdraft_micro: int
    def __init__(self, user_id: _Optional[str] = ..., balance_micro: _Optional[int] = ..., reserved_micro: _Optional[int] = ..., available_micro: _Optional[int] = ..., low: _Optional[bool] = ..., low_threshold_micro: _Optional[int] = ..., tier: _Optional[str] = ..., overdraft_micro: _Optional[int] = ...) -> None: ...

class GetBalanceRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class GrantRequest(_message.Message):
    __slots__ = ("user_id", "amount_micro", "idempotency_key", "kind", "reason", "actor")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MICRO_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    amount_micro: int
    idempotency_key: str
    kind: str
    reason: str
    actor: str
    def __init__(self, user_id: _Optional[str] = ..., amount_micro: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., kind: _Optional[str] = ..., reason: _Optional[str] = ..., actor: _Optional[str] = ...) -> None: ...

class GrantReply(_message.Message):
    __slots__ = ("transaction_id", "balance")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    balance: Balance
    def __init__(self, transaction_id: _Optional[str] = ..., balance: _Optional[_Union[Balance, _Mapping]] = ...) -> None: ...

class ReserveRequest(_message.Message):
    __slots__ = ("user_id", "amount_micro", "idempotency_key", "request_id", "ttl_seconds", "account_id", "key_id", "team_id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MICRO_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    TEAM_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    amount_micro: int
    idempotency_key: str
    request_id: str
    ttl_seconds: int
    account_id: str
    key_id: str
    team_id: str
    def __init__(self, user_id: _Optional[str] = ..., amount_micro: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., request_id: _Optional[str] = ..., ttl_seconds: _Optional[int] = ..., account_id: _Optional[str] = ..., key_id: _Optional[str] = ..., team_id: _Optional[str] = ...) -> None: ...

class ReserveReply(_message.Message):
    __slots__ = ("hold_id", "balance")
    HOLD_ID_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    hold_id: str
    balance: Balance
    def __init__(self, hold_id: _Optional[str] = ..., balance: _Optional[_Union[Balance, _Mapping]] = ...) -> None: ...

class UsageRecord(_message.Message):
    __slots__ = ("request_id", "user_id", "api_key_id", "model", "provider", "deployment", "power_level", "prompt_tokens", "completion_tokens", "cost_micro", "latency_ms", "status", "byok", "cache_hit", "fallback_count", "usage_estimated", "route", "decision", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "end_user", "tags")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    POWER_LEVEL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_MICRO_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    BYOK_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_COUNT_FIELD_NUMBER: _ClassVar[int]
    USAGE_ESTIMATED_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    CACHE_READ_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REASONING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    END_USER_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    user_id: str
    api_key_id: str
    model: str
    provider: str
    deployment: str
    power_level: str
    prompt_tokens: int
    completion_tokens: int
    cost_micro: int
    latency_ms: float
    status: str
    byok: bool
    cache_hit: bool
    fallback_count: int
    usage_estimated: bool
    route: str
    decision: bytes
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    end_user: str
    tags: _containers.ScalarMap[str, str]
    def __init__(self, request_id: _Optional[str] = ..., user_id: _Optional[str] = ..., api_key_id: _Optional[str] = ..., model: _Optional[str] = ..., provider: _Optional[str] = ..., deployment: _Optional[str] = ..., power_level: _Optional[str] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., cost_micro: _Optional[int] = ..., latency_ms: _Optional[float] = ..., status: _Optional[str] = ..., byok: _Optional[bool] = ..., cache_hit: _Optional[bool] = ..., fallback_count: _Optional[int] = ..., usage_estimated: _Optional[bool] = ..., route: _Optional[str] = ..., decision: _Optional[bytes] = ..., cache_read_tokens: _Optional[int] = ..., cache_write_tokens: _Optional[int] = ..., reasoning_tokens: _Optional[int] = ..., end_user: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SettleRequest(_message.Message):
    __slots__ = ("hold_id", "amount_micro", "idempotency_key", "usage")
    HOLD_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MICRO_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    hold_id: str
    amount_micro: int
    idempotency_key: str
    usage: UsageRecord
    def __init__(self, hold_id: _Optional[str] = ..., amount_micro: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., usage: _Optional[_Union[UsageRecord, _Mapping]] = ...) -> None: ...

class SettleReply(_message.Message):
    __slots__ = ("charged_micro", "overdraft_micro", "balance")
    CHARGED_MICRO_FIELD_NUMBER: _ClassVar[int]
    OVERDRAFT_MICRO_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    charged_micro: int
    overdraft_micro: int
    balance: Balance
    def __init__(self, charged_micro: _Optional[int] = ..., overdraft_micro: _Optional[int] = ..., balance: _Optional[_Union[Balance, _Mapping]] = ...) -> None: ...

class SettleBatchRequest(_message.Message):
    __slots__ = ("settles",)
    SETTLES_FIELD_NUMBER: _ClassVar[int]
    settles: _containers.RepeatedCompositeFieldContainer[SettleRequest]
    def __init__(self, settles: _Optional[_Iterable[_Union[SettleRequest, _Mapping]]] = ...) -> None: ...

class SettleOutcome(_message.Message):
    __slots__ = ("reply", "error_code", "error_message")
    REPLY_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    reply: SettleReply
    error_code: str
    error_message: str
    def __init__(self, reply: _Optional[_Union[SettleReply, _Mapping]] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ...) -> None: ...

class SettleBatchReply(_message.Message):
    __slots__ = ("outcomes",)
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    outcomes: _containers.RepeatedCompositeFieldContainer[SettleOutcome]
    def __init__(self, outcomes: _Optional[_Iterable[_Union[SettleOutcome, _Mapping]]] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("hold_id", "idempotency_key", "usage")
    HOLD_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    hold_id: str
    idempotency_key: str
    usage: UsageRecord
    def __init__(self, hold_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., usage: _Optional[_Union[UsageRecord, _Mapping]] = ...) -> None: ...

class ReleaseReply(_message.Message):
    __slots__ = ("balance",)
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    balance: Balance
    def __init__(self, balance: _Optional[_Union[Balance, _Mapping]] = ...) -> None: ...

class RecordUsageRequest(_message.Message):
    __slots__ = ("usage", "idempotency_key")
    USAGE_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    usage: UsageRecord
    idempotency_key: str
    def __init__(self, usage: _Optional[_Union[UsageRecord, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class RecordUsageReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Transaction(_message.Message):
    __slots__ = ("id", "user_id", "kind", "amount_micro", "request_id", "idempotency_key", "created_unix_ms", "reason", "overdraft_micro", "hold_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MICRO_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    OVERDRAFT_MICRO_FIELD_NUMBER: _ClassVar[int]
    HOLD_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    user_id: str
    kind: str
    amount_micro: int
    request_id: str
    idempotency_key: str
    created_unix_ms: int
    reason: str
    overdraft_micro: int
    hold_id: str
    def __init__(self, id: _Optional[str] = ..., user_id: _Optional[str] = ..., kind: _Optional[str] = ..., amount_micro: _Optional[int] = ..., request_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., created_unix_ms: _Optional[int] = ..., reason: _Optional[str] = ..., overdraft_micro: _Optional[int] = ..., hold_id: _Optional[str] = ...) -> None: ...

class ListTransactionsRequest(_message.Message):
    __slots__ = ("user_id", "limit", "before_id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    limit: int
    before_id: str
    def __init__(self, user_id: _Optional[str] = ..., limit: _Optional[int] = ..., before_id: _Optional[str] = ...) -> None: ...

class ListTransactionsReply(_message.Message):
    __slots__ = ("transactions", "next_before_id")
    TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_BEFORE_ID_FIELD_NUMBER: _ClassVar[int]
    transactions: _containers.RepeatedCompositeFieldContainer[Transaction]
    next_before_id: str
    def __init__(self, transactions: _Optional[_Iterable[_Union[Transaction, _Mapping]]] = ..., next_before_id: _Optional[str] = ...) -> None: ...

class UsageRow(_message.Message):
    __slots__ = ("usage", "created_unix_ms")
    USAGE_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    usage: UsageRecord
    created_unix_ms: int
    def __init__(self, usage: _Optional[_Union[UsageRecord, _Mapping]] = ..., created_unix_ms: _Optional[int] = ...) -> None: ...

class ListUsageRequest(_message.Message):
    __slots__ = ("user_id", "since_unix_ms", "until_unix_ms", "limit", "before_id", "filter")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    UNTIL_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_ID_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    since_unix_ms: int
    until_unix_ms: int
    limit: int
    before_id: str
    filter: UsageFilter
    def __init__(self, user_id: _Optional[str] = ..., since_unix_ms: _Optional[int] = ..., until_unix_ms: _Optional[int] = ..., limit: _Optional[int] = ..., before_id: _Optional[str] = ..., filter: _Optional[_Union[UsageFilter, _Mapping]] = ...) -> None: ...

class ListUsageReply(_message.Message):
    __slots__ = ("rows", "next_before_id")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    NEXT_BEFORE_ID_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[UsageRow]
    next_before_id: str
    def __init__(self, rows: _Optional[_Iterable[_Union[UsageRow, _Mapping]]] = ..., next_before_id: _Optional[str] = ...) -> None: ...

class UsageFilter(_message.Message):
    __slots__ = ("model", "api_key_id", "end_user", "tags", "user_ids")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    END_USER_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    model: str
    api_key_id: str
    end_user: str
    tags: _containers.ScalarMap[str, str]
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[str] = ..., api_key_id: _Optional[str] = ..., end_user: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., user_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class UsageSummaryRequest(_message.Message):
    __slots__ = ("user_id", "group_by", "since_unix_ms", "until_unix_ms", "filter")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    UNTIL_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    group_by: str
    since_unix_ms: int
    until_unix_ms: int
    filter: UsageFilter
    def __init__(self, user_id: _Optional[str] = ..., group_by: _Optional[str] = ..., since_unix_ms: _Optional[int] = ..., until_unix_ms: _Optional[int] = ..., filter: _Optional[_Union[UsageFilter, _Mapping]] = ...) -> None: ...

class UsageGroup(_message.Message):
    __slots__ = ("key", "requests", "prompt_tokens", "completion_tokens", "cost_micro", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")
    KEY_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_MICRO_FIELD_NUMBER: _ClassVar[int]
    CACHE_READ_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REASONING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    key: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_micro: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    def __init__(self, key: _Optional[str] = ..., requests: _Optional[int] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., cost_micro: _Optional[int] = ..., cache_read_tokens: _Optional[int] = ..., cache_write_tokens: _Optional[int] = ..., reasoning_tokens: _Optional[int] = ...) -> None: ...

class UsageSummaryReply(_message.Message):
    __slots__ = ("groups",)
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[UsageGroup]
    def __init__(self, groups: _Optional[_Iterable[_Union[UsageGroup, _Mapping]]] = ...) -> None: ...
