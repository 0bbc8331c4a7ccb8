from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AccessPolicy(_message.Message):
    __slots__ = ("models", "max_parallel", "model_limits")
    class ModelLimitsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ModelLimit
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ModelLimit, _Mapping]] = ...) -> None: ...
    MODELS_FIELD_NUMBER: _ClassVar[int]
    MAX_PARALLEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_LIMITS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedScalarFieldContainer[str]
    max_parallel: int
    model_limits: _containers.MessageMap[str, ModelLimit]
    def __init__(self, models: _Optional[_Iterable[str]] = ..., max_parallel: _Optional[int] = ..., model_limits: _Optional[_Mapping[str, ModelLimit]] = ...) -> None: ...

class ModelLimit(_message.Message):
    __slots__ = ("rpm", "tpm")
    RPM_FIELD_NUMBER: _ClassVar[int]
    TPM_FIELD_NUMBER: _ClassVar[int]
    rpm: int
    tpm: int
    def __init__(self, rpm: _Optional[int] = ..., tpm: _Optional[int] = ...) -> None: ...

class Team(_message.Message):
    __slots__ = ("team_id", "name", "pooled", "policy", "created_unix_ms", "members")
    TEAM_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    POOLED_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    team_id: str
    name: str
    pooled: bool
    policy: AccessPolicy
    created_unix_ms: int
    members: _containers.RepeatedCompositeFieldContainer[TeamMember]
    def __init__(self, team_id: _Optional[str] = ..., name: _Optional[str] = ..., pooled: _Optional[bool] = ..., policy: _Optional[_Union[AccessPolicy, _Mapping]] = ..., created_unix_ms: _Optional[int] = ..., members: _Optional[_Iterable[_Union[TeamMember, _Mapping]]] = ...) -> None: ...

class TeamMember(_message.Message):
    __slots__ = ("team_id", "user_id", "role", "added_unix_ms")
    TEAM_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ADDED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    team_id: str
    user_id: str
    role: str
    added_unix_ms: int
    def __init__(self, team_id: _Optional[str] = ..., user_id: _Optional[str] = ..., role: _Optional[str] = ..., added_unix_ms: _Optional[int] = ...) -> None: ...

class UpdateApiKeyRequest(_message.Message):
    __slots__ = ("key_id", "policy", "team_id", "actor")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    TEAM_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    policy: AccessPolicy
    team_id: str
    actor: str
    def __init__(self, key_id: _Optional[str] = ..., policy: _Optional[_Union[AccessPolicy, _Mapping]] = ..., team_id: _Optional[str] = ..., actor: _Optional[str] = ...) -> None: ...

class CreateTeamRequest(_message.Message):
    __slots__ = ("team_id", "name", "pooled", "policy", "actor")
    TEAM_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    POOLED_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    team_id: str
    name: str
    pooled: bool
    policy: AccessPolicy
    actor: str
    def __init__(self, team_id: _Optional[str] = ..., name: _Optional[str] = ..., pooled: _Optional[bool] = ..., policy: _Optional[_Union[AccessPolicy, _Mapping]] = ..., actor: _Optional[str] = ...) -> None: ...

class UpdateTeamRequest(_message.Message):
    __slots__ = ("team_id", "name", "pooled", "policy", "actor")
    TEAM_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    POOLED_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    team_id: str
    name: str
    pooled: bool
    policy: AccessPolicy
    actor: str
    def __init__(self, team_id: _Optional[str] = ..., name: _Optional[str] = ..., pooled: _Optional[bool] = ..., policy: _Optional[_Union[AccessPolicy, _Mapping]] = ..., actor: _Optional[str] = ...) -> None: ...

class GetTeamRequest(_message.Message):
    __slots__ = ("team_id",)
    TEAM_ID_FIELD_NUMBER: _ClassVar[int]
    team_id: str
    def __init__(self, team_id: _Optional[str] = ...) -> None: ...

class ListTeamsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTeamsReply(_message.Message):
    __slots__ = ("teams",)
    TEAMS_FIELD_NUMBER: _ClassVar[int]
    teams: _containers.RepeatedCompositeFieldContainer[Team]
    def __init__(self, teams: _Optional[_Iterable[_Union[Team, _Mapping]]] = ...) -> None: ...

class SetTeamMemberRequest(_message.Message):
    __slots__ = ("team_id", "user_id", "role", "actor")
    TEAM_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    team_id: str
    user_id: str
    role: str
    actor: str
    def __init__(self, team_id: _Optional[str] = ..., user_id: _Optional[str] = ..., role: _Optional[str] = ..., actor: _Optional[str] = ...) -> None: ...

class RemoveTeamMemberRequest(_message.Message):
    __slots__ = ("team_id", "user_id", "actor")
    TEAM_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    team_id: str
    user_id: str
    actor: str
    def __init__(self, team_id: _Optional[str] = ..., user_id: _Optional[str] = ..., actor: _Optional[str] = ...) -> None: ...

class RemoveTeamMemberReply(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: bool
    def __init__(self, removed: _Optional[bool] = ...) -> None: ...

class AuthenticateRequest(_message.Message):
    __slots__ = ("api_key",)
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    api_key: str
    def __init__(self, api_key: _Optional[str] = ...) -> None: ...

class Principal(_message.Message):
    __slots__ = ("user_id", "key_id", "scopes", "rpm_limit", "tpm_limit", "expires_unix_ms", "team_id", "team_role", "team_pays", "policy", "team_policy")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    RPM_LIMIT_FIELD_NUMBER: _ClassVar[int]
    TPM_LIMIT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    TEAM_ID_FIELD_NUMBER: _ClassVar[int]
    TEAM_ROLE_FIELD_NUMBER: _ClassVar[int]
    TEAM_PAYS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    TEAM_POLICY_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    key_id: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    rpm_limit: int
    tpm_limit: int
    expires_unix_ms: int
    team_id: str
    team_role: str
    team_pays: bool
    policy: AccessPolicy
    team_policy: AccessPolicy
    def __init__(self, user_id: _Optional[str] = ..., key_id: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., rpm_limit: _Optional[int] = ..., tpm_limit: _Optional[int] = ..., expires_unix_ms: _Optional[int] = ..., team_id: _Optional[str] = ..., team_role: _Optional[str] = ..., team_pays: _Optional[bool] = ..., policy: _Optional[_Union[AccessPolicy, _Mapping]] = ..., team_policy: _Optional[_Union[AccessPolicy, _Mapping]] = ...) -> None: ...

class CreateApiKeyRequest(_message.Message):
    __slots__ = ("user_id", "scopes", "name", "expires_unix_ms", "rpm_limit", "tpm_limit", "actor", "policy", "team_id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    RPM_LIMIT_FIELD_NUMBER: _ClassVar[int]
    TPM_LIMIT_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    TEAM_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    name: str
    expires_unix_ms: int
    rpm_limit: int
    tpm_limit: int
    actor: str
    policy: AccessPolicy
    team_id: str
    def __init__(self, user_id: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., name: _Optional[str] = ..., expires_unix_ms: _Optional[int] = ..., rpm_limit: _Optional[int] = ..., tpm_limit: _Optional[int] = ..., actor: _Optional[str] = ..., policy: _Optional[_Union[AccessPolicy, _Mapping]] = ..., team_id: _Optional[str] = ...) -> None: ...

class ApiKeyInfo(_message.Message):
    __slots__ = ("key_id", "user_id", "name", "prefix", "scopes", "created_unix_ms", "expires_unix_ms", "revoked_unix_ms", "last_used_unix_ms", "rpm_limit", "tpm_limit", "policy", "team_id")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    REVOKED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    RPM_LIMIT_FIELD_NUMBER: _ClassVar[int]
    TPM_LIMIT_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    TEAM_ID_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    user_id: str
    name: str
    prefix: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    created_unix_ms: int
    expires_unix_ms: int
    revoked_unix_ms: int
    last_used_unix_ms: int
    rpm_limit: int
    tpm_limit: int
    policy: AccessPolicy
    team_id: str
    def __init__(self, key_id: _Optional[str] = ..., user_id: _Optional[str] = ..., name: _Optional[str] = ..., prefix: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., created_unix_ms: _Optional[int] = ..., expires_unix_ms: _Optional[int] = ..., revoked_unix_ms: _Optional[int] = ..., last_used_unix_ms: _Optional[int] = ..., rpm_limit: _Optional[int] = ..., tpm_limit: _Optional[int] = ..., policy: _Optional[_Union[AccessPolicy, _Mapping]] = ..., team_id: _Optional[str] = ...) -> None: ...

class CreateApiKeyReply(_message.Message):
    __slots__ = ("api_key", "info")
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    api_key: str
    info: ApiKeyInfo
    def __init__(self, api_key: _Optional[str] = ..., info: _Optional[_Union[ApiKeyInfo, _Mapping]] = ...) -> None: ...

class ListApiKeysRequest(_message.Message):
    __slots__ = ("user_id", "team_id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TEAM_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    team_id: str
    def __init__(self, user_id: _Optional[str] = ..., team_id: _Optional[str] = ...) -> None: ...

class ListApiKeysReply(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[ApiKeyInfo]
    def __init__(self, keys: _Optional[_Iterable[_Union[ApiKeyInfo, _Mapping]]] = ...) -> None: ...

class RevokeApiKeyRequest(_message.Message):
    __slots__ = ("key_id", "user_id", "actor", "team_id")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    TEAM_ID_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    user_id: str
    actor: str
    team_id: str
    def __init__(self, key_id: _Optional[str] = ..., user_id: _Optional[str] = ..., actor: _Optional[str] = ..., team_id: _Optional[str] = ...) -> None: ...

class PutProviderKeyRequest(_message.Message):
    __slots__ = ("user_id", "provider", "api_key", "label")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    provider: str
    api_key: str
    label: str
    def __init__(self, user_id: _Optional[str] = ..., provider: _Optional[str] = ..., api_key: _Optional[str] = ..., label: _Optional[str] = ...) -> None: ...

class ProviderKeyInfo(_message.Message):
    __slots__ = ("key_id", "user_id", "provider", "masked", "label", "created_unix_ms", "last_used_unix_ms", "fingerprint", "master_key_version")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MASKED_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    MASTER_KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    user_id: str
    provider: str
    masked: str
    label: str
    created_unix_ms: int
    last_used_unix_ms: int
    fingerprint: str
    master_key_version: int
    def __init__(self, key_id: _Optional[str] = ..., user_id: _Optional[str] = ..., provider: _Optional[str] = ..., masked: _Optional[str] = ..., label: _Optional[str] = ..., created_unix_ms: _Optional[int] = ..., last_used_unix_ms: _Optional[int] = ..., fingerprint: _Optional[str] = ..., master_key_version: _Optional[int] = ...) -> None: ...

class ListProviderKeysRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class ListProviderKeysReply(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[ProviderKeyInfo]
    def __init__(self, keys: _Optional[_Iterable[_Union[ProviderKeyInfo, _Mapping]]] = ...) -> None: ...

class DeleteProviderKeyRequest(_message.Message):
    __slots__ = ("user_id", "provider")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    provider: str
    def __init__(self, user_id: _Optional[str] = ..., provider: _Optional[str] = ...) -> None: ...

class DeleteProviderKeyReply(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class GetProviderKeyRequest(_message.Message):
    __slots__ = ("user_id", "provider")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    provider: str
    def __init__(self, user_id: _Optional[str] = ..., provider: _Optional[str] = ...) -> None: ...

class ProviderKeySecret(_message.Message):
    __slots__ = ("found", "api_key", "key_id")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    found: bool
    api_key: str
    key_id: str
    def __init__(self, found: _Optional[bool] = ..., api_key: _Optional[str] = ..., key_id: _Optional[str] = ...) -> None: ...

class RotateMasterKeyRequest(_message.Message):
    __slots__ = ("limit", "actor", "after_id")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    limit: int
    actor: str
    after_id: int
    def __init__(self, limit: _Optional[int] = ..., actor: _Optional[str] = ..., after_id: _Optional[int] = ...) -> None: ...

class RotateMasterKeyReply(_message.Message):
    __slots__ = ("active_version", "rewrapped", "skipped", "remaining", "total", "failed", "cursor")
    ACTIVE_VERSION_FIELD_NUMBER: _ClassVar[int]
    REWRAPPED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    active_version: int
    rewrapped: int
    skipped: int
    remaining: int
    total: int
    failed: int
    cursor: int
    def __init__(self, active_version: _Optional[int] = ..., rewrapped: _Optional[int] = ..., skipped: _Optional[int] = ..., remaining: _Optional[int] = ..., total: _Optional[int] = ..., failed: _Optional[int] = ..., cursor: _Optional[int] = ...) -> None: ...

class VaultStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MasterKeyVersion(_message.Message):
    __slots__ = ("version", "rows", "active", "configured", "retired_unix_ms")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    CONFIGURED_FIELD_NUMBER: _ClassVar[int]
    RETIRED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    version: int
    rows: int
    active: bool
    configured: bool
    retired_unix_ms: int
    def __init__(self, version: _Optional[int] = ..., rows: _Optional[int] = ..., active: _Optional[bool] = ..., configured: _Optional[bool] = ..., retired_unix_ms: _Optional[int] = ...) -> None: ...

class VaultStatusReply(_message.Message):
    __slots__ = ("active_version", "versions", "total")
    ACTIVE_VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    active_version: int
    versions: _containers.RepeatedCompositeFieldContainer[MasterKeyVersion]
    total: int
    def __init__(self, active_version: _Optional[int] = ..., versions: _Optional[_Iterable[_Union[MasterKeyVersion, _Mapping]]] = ..., total: _Optional[int] = ...) -> None: ...

class RetireMasterKeyRequest(_message.Message):
    __slots__ = ("version", "actor")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    version: int
    actor: str
    def __init__(self, version: _Optional[int] = ..., actor: _Optional[str] = ...) -> None: ...

class ListAuditEventsRequest(_message.Message):
    __slots__ = ("user_id", "limit")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    limit: int
    def __init__(self, user_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class AuditEvent(_message.Message):
    __slots__ = ("at_unix_ms", "actor", "action", "user_id", "key_id", "fingerprint", "outcome", "detail")
    AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    at_unix_ms: int
    actor: str
    action: str
    user_id: str
    key_id: str
    fingerprint: str
    outcome: str
    detail: str
    def __init__(self, at_unix_ms: _Optional[int] = ..., actor: _Optional[str] = ..., action: _Optional[str] = ..., user_id: _Optional[str] = ..., key_id: _Optional[str] = ..., fingerprint: _Optional[str] = ..., outcome: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class ListAuditEventsReply(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[AuditEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[AuditEvent, _Mapping]]] = ...) -> None: ...
