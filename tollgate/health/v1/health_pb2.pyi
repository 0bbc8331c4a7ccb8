from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATE_UNKNOWN: _ClassVar[State]
    STATE_HEALTHY: _ClassVar[State]
    STATE_DEGRADED: _ClassVar[State]
    STATE_DOWN: _ClassVar[State]
STATE_UNKNOWN: State
STATE_HEALTHY: State
STATE_DEGRADED: State
STATE_DOWN: State

class ProviderState(_message.Message):
    __slots__ = ("provider", "base_url", "state", "latency_ms", "last_checked_unix_ms", "consecutive_failures", "last_error", "ejected", "ejected_until_unix_ms", "ejections", "p50_ms", "p90_ms", "p99_ms", "last_failure_unix_ms", "latency_ewma_ms", "forced", "forced_reason", "forced_by", "forced_unix_ms")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_CHECKED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    CONSECUTIVE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    EJECTED_FIELD_NUMBER: _ClassVar[int]
    EJECTED_UNTIL_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    EJECTIONS_FIELD_NUMBER: _ClassVar[int]
    P50_MS_FIELD_NUMBER: _ClassVar[int]
    P90_MS_FIELD_NUMBER: _ClassVar[int]
    P99_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_FAILURE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_EWMA_MS_FIELD_NUMBER: _ClassVar[int]
    FORCED_FIELD_NUMBER: _ClassVar[int]
    FORCED_REASON_FIELD_NUMBER: _ClassVar[int]
    FORCED_BY_FIELD_NUMBER: _ClassVar[int]
    FORCED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    provider: str
    base_url: str
    state: State
    latency_ms: float
    last_checked_unix_ms: int
    consecutive_failures: int
    last_error: str
    ejected: bool
    ejected_until_unix_ms: int
    ejections: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    last_failure_unix_ms: int
    latency_ewma_ms: float
    forced: str
    forced_reason: str
    forced_by: str
    forced_unix_ms: int
    def __init__(self, provider: _Optional[str] = ..., base_url: _Optional[str] = ..., state: _Optional[_Union[State, str]] = ..., latency_ms: _Optional[float] = ..., last_checked_unix_ms: _Optional[int] = ..., consecutive_failures: _Optional[int] = ..., last_error: _Optional[str] = ..., ejected: _Optional[bool] = ..., ejected_until_unix_ms: _Optional[int] = ..., ejections: _Optional[int] = ..., p50_ms: _Optional[float] = ..., p90_ms: _Optional[float] = ..., p99_ms: _Optional[float] = ..., last_failure_unix_ms: _Optional[int] = ..., latency_ewma_ms: _Optional[float] = ..., forced: _Optional[str] = ..., forced_reason: _Optional[str] = ..., forced_by: _Optional[str] = ..., forced_unix_ms: _Optional[int] = ...) -> None: ...

class ListProvidersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListProvidersReply(_message.Message):
    __slots__ = ("providers",)
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    providers: _containers.RepeatedCompositeFieldContainer[ProviderState]
    def __init__(self, providers: _Optional[_Iterable[_Union[ProviderState, _Mapping]]] = ...) -> None: ...

class WatchProvidersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ProviderEvent(_message.Message):
    __slots__ = ("snapshot", "providers")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    snapshot: bool
    providers: _containers.RepeatedCompositeFieldContainer[ProviderState]
    def __init__(self, snapshot: _Optional[bool] = ..., providers: _Optional[_Iterable[_Union[ProviderState, _Mapping]]] = ...) -> None: ...

class OutcomeReport(_message.Message):
    __slots__ = ("provider", "base_url", "success", "latency_ms", "http_status", "error")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    provider: str
    base_url: str
    success: bool
    latency_ms: float
    http_status: int
    error: str
    def __init__(self, provider: _Optional[str] = ..., base_url: _Optional[str] = ..., success: _Optional[bool] = ..., latency_ms: _Optional[float] = ..., http_status: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class ReportAck(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CheckNowRequest(_message.Message):
    __slots__ = ("providers",)
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    providers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, providers: _Optional[_Iterable[str]] = ...) -> None: ...

class SetMaintenanceRequest(_message.Message):
    __slots__ = ("provider", "state", "reason", "actor")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    provider: str
    state: str
    reason: str
    actor: str
    def __init__(self, provider: _Optional[str] = ..., state: _Optional[str] = ..., reason: _Optional[str] = ..., actor: _Optional[str] = ...) -> None: ...

class MaintenanceRecord(_message.Message):
    __slots__ = ("id", "provider", "state", "reason", "actor", "at_unix_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    id: int
    provider: str
    state: str
    reason: str
    actor: str
    at_unix_ms: int
    def __init__(self, id: _Optional[int] = ..., provider: _Optional[str] = ..., state: _Optional[str] = ..., reason: _Optional[str] = ..., actor: _Optional[str] = ..., at_unix_ms: _Optional[int] = ...) -> None: ...

class ListMaintenanceRequest(_message.Message):
    __slots__ = ("provider", "limit")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    provider: str
    limit: int
    def __init__(self, provider: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListMaintenanceReply(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[MaintenanceRecord]
    def __init__(self, records: _Optional[_Iterable[_Union[MaintenanceRecord, _Mapping]]] = ...) -> None: ...
