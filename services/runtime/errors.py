"""Domain errors and the one table that maps them to gRPC status, HTTP status and OpenAI error type.

Services raise `DomainError`; the `rpc` decorator turns it into a gRPC status with the error code
and parameter in trailing metadata; the gateway turns the status back into the same `DomainError`
and answers with the HTTP status and OpenAI type from `ERRORS`.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar, cast

import grpc

from services.runtime import tracing
from services.runtime.logging import request_id
from services.runtime.metrics import RPC_ERRORS, RPC_SECONDS

log = logging.getLogger("tollgate.errors")


class ErrorKind(NamedTuple):
    grpc_status: grpc.StatusCode
    http_status: int
    type: str


ERRORS: dict[str, ErrorKind] = {
    "invalid_request": ErrorKind(grpc.StatusCode.INVALID_ARGUMENT, 400, "invalid_request_error"),
    "invalid_api_key": ErrorKind(grpc.StatusCode.UNAUTHENTICATED, 401, "authentication_error"),
    # An internal call without a valid service identity: a deployment fault, never the client's.
    "unauthenticated": ErrorKind(grpc.StatusCode.UNAUTHENTICATED, 500, "api_error"),
    "insufficient_credits": ErrorKind(grpc.StatusCode.FAILED_PRECONDITION, 402, "insufficient_quota"),
    # A hard budget limit of the key, user or team would be passed; the message names the budget and its reset.
    "budget_exceeded": ErrorKind(grpc.StatusCode.FAILED_PRECONDITION, 402, "insufficient_quota"),
    "permission_denied": ErrorKind(grpc.StatusCode.PERMISSION_DENIED, 403, "permission_error"),
    # A model outside the key's or its team's allow-list (services/router/model_access.py).
    "model_not_allowed": ErrorKind(grpc.StatusCode.PERMISSION_DENIED, 403, "permission_error"),
    "model_not_found": ErrorKind(grpc.StatusCode.NOT_FOUND, 404, "invalid_request_error"),
    "not_found": ErrorKind(grpc.StatusCode.NOT_FOUND, 404, "invalid_request_error"),
    "method_not_allowed": ErrorKind(grpc.StatusCode.UNIMPLEMENTED, 405, "invalid_request_error"),
    "request_timeout": ErrorKind(grpc.StatusCode.DEADLINE_EXCEEDED, 408, "invalid_request_error"),
    "conflict": ErrorKind(grpc.StatusCode.ABORTED, 409, "invalid_request_error"),
    "request_too_large": ErrorKind(grpc.StatusCode.INVALID_ARGUMENT, 413, "invalid_request_error"),
    "headers_too_large": ErrorKind(grpc.StatusCode.INVALID_ARGUMENT, 431, "invalid_request_error"),
    "idempotency_key_reused": ErrorKind(grpc.StatusCode.ALREADY_EXISTS, 422, "invalid_request_error"),
    "rate_limit_exceeded": ErrorKind(grpc.StatusCode.RESOURCE_EXHAUSTED, 429, "rate_limit_error"),
    "internal_error": ErrorKind(grpc.StatusCode.INTERNAL, 500, "api_error"),
    "provider_error": ErrorKind(grpc.StatusCode.UNAVAILABLE, 502, "api_error"),
    "provider_auth_failed": ErrorKind(grpc.StatusCode.UNAVAILABLE, 502, "api_error"),
    "provider_unavailable": ErrorKind(grpc.StatusCode.UNAVAILABLE, 503, "api_error"),
    "service_unavailable": ErrorKind(grpc.StatusCode.UNAVAILABLE, 503, "api_error"),
    "timeout": ErrorKind(grpc.StatusCode.DEADLINE_EXCEEDED, 504, "timeout_error"),
    # The client went away: nobody reads the answer; the status is what access logs and metrics count.
    "client_closed": ErrorKind(grpc.StatusCode.CANCELLED, 499, "api_error"),
}

# How a bare gRPC status (no tollgate code in its metadata) reads at the edge.
_BY_STATUS: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.INVALID_ARGUMENT: "invalid_request",
    grpc.StatusCode.UNAUTHENTICATED: "invalid_api_key",
    grpc.StatusCode.PERMISSION_DENIED: "permission_denied",
    grpc.StatusCode.NOT_FOUND: "not_found",
    grpc.StatusCode.ALREADY_EXISTS: "idempotency_key_reused",
    grpc.StatusCode.ABORTED: "conflict",
    grpc.StatusCode.FAILED_PRECONDITION: "insufficient_credits",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "rate_limit_exceeded",
    grpc.StatusCode.DEADLINE_EXCEEDED: "timeout",
    grpc.StatusCode.UNAVAILABLE: "service_unavailable",
    grpc.StatusCode.CANCELLED: "service_unavailable",
}

# Turn an exception that is not a bug (a database that is away) into the error the caller gets instead.
TRANSLATORS: list[Callable[[Exception], DomainError | None]] = []

CODE_KEY = "tollgate-code"
PARAM_KEY = "tollgate-param"


@dataclass
class DomainError(Exception):
    code: str
    message: str
    param: str | None = None
    # HTTP headers the answer carries (`retry-after`); they travel as trailing metadata between services.
    headers: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    @property
    def kind(self) -> ErrorKind:
        return ERRORS.get(self.code, ERRORS["internal_error"])

    def body(self) -> dict[str, Any]:
        """The OpenAI error object."""
        return {"error": {"message": self.message, "type": self.kind.type, "param": self.param, "code": self.code}}


def from_rpc_error(exc: grpc.aio.AioRpcError, service: str) -> DomainError:
    """Read a failed call back into the domain error its server raised."""
    meta = {k: v for k, v in (exc.trailing_metadata() or ()) if isinstance(v, str)}
    status = exc.code()
    code = meta.get(CODE_KEY)
    if code:
        err = DomainError(code, exc.details() or code, meta.get(PARAM_KEY) or None)
        if code == "service_unavailable" and meta.get("retry-after", "").isdigit():
            err.headers = {"retry-after": meta["retry-after"]}
        return err
    if status in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        return DomainError("service_unavailable", f"the {service} service is unavailable; try again shortly")
    if status is grpc.StatusCode.DEADLINE_EXCEEDED:
        return DomainError("timeout", f"the {service} service did not answer in time")
    if status is grpc.StatusCode.INTERNAL or status not in _BY_STATUS:
        return DomainError("internal_error", f"the {service} service failed to handle the request")
    return DomainError(_BY_STATUS[status], exc.details() or status.name.lower())


async def abort(context: grpc.aio.ServicerContext[Any, Any], err: DomainError) -> None:
    metadata = [(CODE_KEY, err.code)]
    if err.param:
        metadata.append((PARAM_KEY, err.param))
    # Headers an error carries (a rate limit's `retry-after` and `x-ratelimit-*`) travel as trailing metadata.
    metadata += [(k.lower(), str(v)) for k, v in err.headers.items()]
    await context.abort(err.kind.grpc_status, err.message, trailing_metadata=tuple(metadata))


F = TypeVar("F", bound=Callable[..., Any])


def unhandled(method: Callable[..., Any], exc: Exception) -> DomainError:
    """What a caller gets for an exception no domain rule raised: a known outage's error, else `internal_error`."""
    for translate in TRANSLATORS:
        err = translate(exc)
        if err is not None:
            return err
    log.exception("unhandled error in %s", method.__qualname__, exc_info=exc)
    return DomainError("internal_error", "internal error")


def _request_id(metadata: Any) -> str:
    for key, value in metadata:
        if key == "x-request-id" and isinstance(value, str):
            return value
    return ""


def rpc(method: F) -> F:
    """Wrap a servicer method: domain errors become statuses; anything else is logged and INTERNAL.

    Each call is timed into `tollgate_rpc_seconds` by method and outcome code.
    """
    name = method.__name__
    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream(self: Any, request: Any, context: Any) -> AsyncIterator[Any]:
            metadata = context.invocation_metadata() or ()
            request_id.set(_request_id(metadata))
            try:
                with tracing.server_span(name, metadata):
                    async for item in method(self, request, context):
                        yield item
            except DomainError as err:
                RPC_ERRORS.labels(name, err.code).inc()
                await abort(context, err)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await abort(context, unhandled(method, exc))

        return cast(F, stream)

    @functools.wraps(method)
    async def unary(self: Any, request: Any, context: Any) -> Any:
        started, code = time.perf_counter(), "ok"
        metadata = context.invocation_metadata() or ()
        token = request_id.set(_request_id(metadata))
        try:
            with tracing.server_span(name, metadata):
                return await cast(Callable[..., Awaitable[Any]], method)(self, request, context)
        except DomainError as err:
            code = err.code
            RPC_ERRORS.labels(name, code).inc()
            await abort(context, err)
        except grpc.aio.AbortError:
            code = "aborted"
            raise
        except Exception as exc:
            refusal = unhandled(method, exc)
            code = refusal.code
            await abort(context, refusal)
        finally:
            request_id.reset(token)
            RPC_SECONDS.labels(name, code).observe(time.perf_counter() - started)

    return cast(F, unary)
