"""One request's way through the router: select, then per attempt credential → reserve → call → settle.

Each attempt holds credits for its worst case before calling the provider and settles the real cost after,
or releases the hold before the next attempt begins. Every provider call has its hold (of nothing when the
model is free or the caller's own key pays) and so exactly one usage row, which `credits reconcile` counts;
the ledger's idempotency keys are made here, never taken from the client's request id. Connect errors,
timeouts, 429, 5xx and garbage move on to the next candidate, within a bounded number of attempts and the
caller's deadline. Once a stream has sent its first chunk there is no silent switch: it ends with an
OpenAI-shaped error event and the hold settles for what was delivered. Ledger writes that must happen even
when the caller goes away are shielded. Which models may answer is `selection.py`'s; which deployment of each
is tried in which order is `deployments.py`'s. A request keeps the catalog it started with: a reload
(`reload`) changes only the requests that begin after it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
import uuid
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from services.router import normalize, telemetry
from services.router.adapters.base import Adapter, Reply, UpstreamError
from services.router.adapters.openai import OpenAIAdapter
from services.router.catalog import Catalog, Model, Provider
from services.router.clients import Funds, Hold, Ledger, Payer, Vault
from services.router.deployments import Deployments
from services.router.health_view import HealthView
from services.router.model_access import ModelAccess
from services.router.pricing import Usage, charge_micro, credits, hold_tokens, worst_case_micro
from services.router.request import Request, estimate_tokens
from services.router.selection import Decision, select
from services.router.settlements import Settlements
from services.runtime.channels import Deadline
from services.runtime.errors import DomainError
from services.runtime.secrets import is_credential
from tollgate.credits.v1 import credits_pb2
from tollgate.router.v1 import router_pb2

log = logging.getLogger("tollgate.router.pipeline")
T = TypeVar("T")

# A timeout this close to the caller's deadline was the caller's deadline.
_DEADLINE_SLACK = 0.05
# Upstream failures that say "the provider is not there" rather than "the provider broke".
_UNAVAILABLE_STATUSES = {0, 429, 502, 503, 504}


@dataclass(frozen=True, slots=True)
class Caller:
    request_id: str
    user_id: str
    key_id: str
    deadline: Deadline
    inline_provider: str = ""
    inline_key: str = field(default="", repr=False)
    team_id: str = ""
    team_pays: bool = False  # the team's pool ("team:<team_id>") pays, and its balance is the one reported
    # The models this caller may be answered by (model_access.py); empty: any.
    allowed_models: tuple[str, ...] = ()
    team_allowed_models: tuple[str, ...] = ()

    @property
    def payer(self) -> Payer:
        """Who pays this caller's holds, and whose budgets (key, user, team) they count against."""
        pool = f"team:{self.team_id}" if self.team_pays and self.team_id else ""
        return Payer(account_id=pool, key_id=self.key_id, team_id=self.team_id)


@dataclass(slots=True)
class Credential:
    api_key: str | None = field(repr=False)
    byok: bool


@dataclass(slots=True)
class Attempt:
    model: str
    provider: str
    result: str  # ok | error | skipped | cut | cancelled
    status: int = 0
    error: str = ""
    upstream_ms: float = 0.0
    deployment: str = ""

    @classmethod
    def of(cls, model: Model, result: str, status: int = 0, error: str = "", upstream_ms: float = 0.0) -> Attempt:
        return cls(model.id, model.provider.name, result, status, error, upstream_ms, model.deployment_id)


@dataclass
class Settings:
    """The pipeline's knobs (from `RouterSettings`)."""

    default_power_level: str
    max_attempts: int = 3
    hold_ttl_seconds: int = 900
    hold_ttl_margin_seconds: int = 30
    rpc_timeout: float = 5.0
    byok_fallback_to_platform: bool = False
    deployment_cooldown_seconds: float = 10.0
    settle_after_answer: bool = True


@dataclass
class _Trace:
    """What the request did so far, for the usage row and the outcome."""

    request: Request
    caller: Caller
    decision: Decision
    catalog: Catalog  # the one the request started with, whatever a reload does meanwhile
    # The ledger's keys for this request: made by the router, so a replayed client request id reaches nothing.
    ledger_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: float = field(default_factory=time.monotonic)
    attempts: list[Attempt] = field(default_factory=list)
    upstream_ms: float = 0.0
    answering: telemetry.AttemptRecord | None = None  # the attempt that answered, until it ends

    @property
    def fallbacks(self) -> int:
        return max(0, sum(a.result != "skipped" for a in self.attempts) - 1)


class Router:
    def __init__(
        self,
        catalog: Catalog,
        settings: Settings,
        ledger: Ledger,
        vault: Vault,
        health: HealthView,
        adapters: dict[str, Adapter] | None = None,
        settlements: Settlements | None = None,
    ) -> None:
        self.catalog = catalog
        self.settings = settings
        self.ledger = ledger
        self.vault = vault
        self.health = health
        self.settlements = settlements if settlements is not None else Settlements(ledger, None, settings.rpc_timeout)
        self._adapters: dict[str, Adapter] = adapters if adapters is not None else {"openai": OpenAIAdapter()}
        self._background: set[asyncio.Future[Any]] = set()
        self.deployments = Deployments(health, settings.deployment_cooldown_seconds)

    def reload(self, catalog: Catalog) -> None:
        """Serve new requests from `catalog`; requests under way finish on the one they started with."""
        self.catalog = catalog

    def adapter(self, model: Model) -> Adapter:
        name = model.provider.adapter
        found = self._adapters.get(name)
        if found is None:
            from services.router.adapters.litellm import LiteLLMAdapter

            found = self._adapters[name] = LiteLLMAdapter()
        return found

    async def close(self) -> None:
        for adapter in self._adapters.values():
            await adapter.close()

    # selection

    def decide(
        self,
        request: Request,
        caller: Caller | None = None,
        catalog: Catalog | None = None,
        access: ModelAccess | None = None,
    ) -> Decision:
        if access is None and caller is not None:
            access = ModelAccess.of(caller.allowed_models, caller.team_allowed_models)
        catalog = catalog if catalog is not None else self.catalog
        decision = select(catalog, request, self.settings.default_power_level, self.health, access)
        if caller is not None and caller.inline_key:
            if not is_credential(caller.inline_key):
                raise DomainError(
                    "invalid_request", "api_key must be printable ASCII without spaces or control characters", "api_key"
                )
            own = [c for c in decision.candidates if caller.inline_provider in c.model.providers]
            if own and not _on(own[0].model, caller.inline_provider).byok:
                raise DomainError(
                    "invalid_request",
                    f"{caller.inline_provider} does not take callers' own keys; send the request without api_key",
                    "api_key",
                )
            if not own:
                chosen = decision.candidates[0].model
                raise DomainError(
                    "invalid_request",
                    f"the inline provider key is for {caller.inline_provider or 'no provider'}, but "
                    f"{chosen.id} runs on {chosen.provider.name}",
                    "provider",
                )
            decision.candidates = own
        if request.route == "responses":
            _only_responses(decision)
        return decision

    # non-streamed

    def _trace(self, request: Request, caller: Caller) -> _Trace:
        catalog = self.catalog
        return _Trace(request, caller, self.decide(request, caller, catalog), catalog)

    async def complete(self, request: Request, caller: Caller) -> tuple[bytes, router_pb2.Outcome]:
        trace = self._trace(request, caller)

        async def call(model: Model, credential: Credential) -> Reply:
            remaining = caller.deadline.remaining(model.provider.timeout_s)
            payload = self._payload(request, stream=False)
            return await self.adapter(model).call(request.route, model, payload, credential.api_key, remaining)

        model, credential, hold, tries, began, reply = await self._first_answer(trace, call)
        self.deployments.ended(model)
        waited = (time.monotonic() - began) * 1000
        if trace.answering is not None:
            billed = normalize.usage_for(request.route, reply.body)
            response_model = str(reply.body.get("model") or "")
            prompt, completion = (billed.prompt, billed.completion) if billed else (None, None)
            trace.answering.finish("ok", 200, "", prompt, completion, response_model)
        trace.upstream_ms += waited
        self.health.report(model.provider.name, model.provider.api_base, True, waited, 200, "")
        trace.attempts.append(Attempt.of(model, "ok", 200, "", waited))
        telemetry.fell_back(request.route, trace.fallbacks)
        return await self._shielded(self._finish(trace, model, credential, hold, tries, reply.body))

    async def _first_answer(
        self, trace: _Trace, start: Callable[[Model, Credential], Awaitable[T]]
    ) -> tuple[Model, Credential, Hold, int, float, T]:
        """Try the decision's candidates in order until one answers: the attempt loop of every route.

        Each attempt takes a credential and a hold; a failed attempt releases its hold before the next.
        """
        caller = trace.caller
        request = trace.request

        def callable_here(model: Model) -> bool:
            if caller.inline_key and model.provider.name != caller.inline_provider:
                return False
            return request.route != "responses" or model.provider.responses

        planned = self.deployments.plan([c.model for c in trace.decision.candidates], request.provider, callable_here)
        queue = deque((m, False) for m in planned)
        tries = 0
        while queue and tries < self.settings.max_attempts:
            if caller.deadline.expired:
                break
            model, platform_only = queue.popleft()
            credential = await self._credential(caller, model, platform_only, trace)
            if credential is None:
                continue
            tries += 1
            hold = await self._reserve(trace, model, credential, tries)
            began = time.monotonic()
            record = telemetry.AttemptRecord(trace.request.route, model, tries).start()
            self.deployments.started(model)
            try:
                answer = await start(model, credential)
            except UpstreamError as err:
                self.deployments.ended(model)
                record.finish("error", err.status, err.kind)
                # The caller's own deadline, not the provider's, cut a call the provider had: as if it hung up.
                callers_deadline = (
                    err.kind == "timeout" and caller.deadline.expires - time.monotonic() < _DEADLINE_SLACK
                )
                self._failed(trace, model, credential, err, began, reported=not callers_deadline)
                if callers_deadline:
                    await self._shielded(self._abandoned(trace, model, credential, hold, tries))
                    break
                if err.retryable and not credential.byok:
                    # Not for the caller's own deadline or key: one client must not cool a deployment for all.
                    self.deployments.failed(model)
                await self._shielded(self._release(trace, hold, tries, None))
                if err.auth and credential.byok and self.settings.byok_fallback_to_platform:
                    queue.appendleft((model, True))
                    continue
                if not err.retryable:
                    await self._record_failure(trace, model, "error")
                    raise _client_error(err) from None
                continue
            except asyncio.CancelledError:
                # The caller went away while the provider had the request: it bills the prompt, and so do we.
                self.deployments.ended(model)
                record.finish("cancelled")
                trace.attempts.append(Attempt.of(model, "cancelled"))
                await self._shielded(self._abandoned(trace, model, credential, hold, tries))
                raise
            except BaseException as exc:
                # Refused before it was sent (a body that cannot be encoded) or our own fault: nothing to pay.
                self.deployments.ended(model)
                reason = exc.message if isinstance(exc, DomainError) else type(exc).__name__
                record.finish("error", error=exc.code if isinstance(exc, DomainError) else type(exc).__name__)
                trace.attempts.append(Attempt.of(model, "error", 0, reason))
                await self._shielded(self._release(trace, hold, tries, self._usage(trace, model, Usage(), 0, "error")))
                raise
            self.deployments.answered(model, (time.monotonic() - began) * 1000)
            trace.answering = record
            return model, credential, hold, tries, began, answer
        await self._record_failure(trace, None, "error")
        error = self._exhausted(trace)
        telemetry.exhausted(trace.request.route, error.code)
        raise error

    async def _abandoned(self, trace: _Trace, model: Model, credential: Credential, hold: Hold, attempt: int) -> None:
        """Settle an attempt its caller left while the provider had it: the prompt, and nothing written."""
        used = Usage(trace.request.prompt_tokens)
        cost = charge_micro(model, used) if _paid(model, credential) else 0
        await self._account(trace, model, credential, hold, attempt, used, cost, True, "cancelled")

    async def _finish(
        self, trace: _Trace, model: Model, credential: Credential, hold: Hold, attempt: int, body: dict[str, Any]
    ) -> tuple[bytes, router_pb2.Outcome]:
        request = trace.request
        reported = normalize.usage_for(request.route, body)
        if reported is not None:
            used, estimated = reported, False
        else:
            used, estimated = Usage(request.prompt_tokens, _written(model, request, normalize.reply_text(body))), True
        cost = charge_micro(model, used) if _paid(model, credential) else 0
        funds = await self._account(trace, model, credential, hold, attempt, used, cost, estimated, "ok")
        if request.route == "embedding":
            _require_dimensions(model, request, body)
            body = normalize.embedding(body, model.id, used.prompt, request.body.get("encoding_format"))
        elif request.route == "responses":
            body = normalize.response(body, model.id, used)
        else:
            body = normalize.completion(request.route, body, model.id, used.prompt, used.completion)
        outcome = self._outcome(trace, model, credential, used, cost, funds, estimated)
        body["_metadata"] = _metadata(outcome)
        return orjson.dumps(body), outcome

    # streamed

    async def stream(self, request: Request, caller: Caller) -> AsyncGenerator[router_pb2.StreamEvent, None]:
        trace = self._trace(request, caller)

        async def open_stream(model: Model, credential: Credential) -> tuple[Any, AsyncIterator[Any]]:
            remaining = caller.deadline.remaining(model.provider.timeout_s)
            payload = self._payload(request, stream=True)
            events = self.adapter(model).stream(request.route, model, payload, credential.api_key, remaining)
            try:
                return await anext(events), events
            except StopAsyncIteration:
                raise UpstreamError(
                    "garbage", 200, f"{model.provider.name} ended the stream before sending anything"
                ) from None
            except UpstreamError:
                raise
            except BaseException:
                await self._shielded(_close(events))
                raise

        model, credential, hold, tries, began, (first, events) = await self._first_answer(trace, open_stream)
        try:
            async for event in self._relay(trace, model, credential, hold, tries, began, first, events):
                yield event
        finally:
            self.deployments.ended(model)

    async def _relay(
        self,
        trace: _Trace,
        model: Model,
        credential: Credential,
        hold: Hold,
        attempt: int,
        began: float,
        first: Any,
        events: AsyncIterator[Any],
    ) -> AsyncIterator[router_pb2.StreamEvent]:
        request = trace.request
        route = request.route
        wants_usage = request.include_usage
        reported: Usage | None = None
        held_usage: dict[str, Any] | None = None  # the usage chunk waits for the settlement to carry `_metadata`
        shape = normalize.StreamShape(route, model.id)
        announced = False
        chars = 0
        status = "cancelled"
        response_model = str(first.obj.get("model") or "")
        failure: UpstreamError | None = None
        event = first
        ended = route != "responses"  # a Responses stream ends with its own event, not with the connection
        try:
            while True:
                obj = event.obj
                raw = event.raw
                relay = True
                chars += normalize.response_text(obj) if route == "responses" else normalize.chunk_text(route, obj)
                if route == "responses":
                    if obj.get("type") in normalize.RESPONSE_ENDS:
                        ended = True
                        reported = normalize.response_usage(obj.get("response")) or reported
                    if normalize.response_event(obj, model.id):
                        raw = b""
                elif obj.get("usage") is not None:
                    reported = normalize.usage_of(obj) or reported
                    if obj.get("choices"):
                        if not wants_usage:
                            del obj["usage"]
                            raw = b""
                    else:
                        relay = False
                        if wants_usage:
                            shape.chunk(obj)
                            held_usage = obj
                if relay:
                    if (route != "responses" and shape.chunk(obj)) or not raw:
                        raw = orjson.dumps(obj)
                    if announced:
                        yield router_pb2.StreamEvent(chunk=raw)
                    else:
                        announced = True
                        yield router_pb2.StreamEvent(chunk=raw, provider=model.provider.name, model=model.id)
                try:
                    event = await anext(events)
                except StopAsyncIteration:
                    break
            if not ended:
                raise UpstreamError("cut", 200, f"{model.provider.name} ended the stream before response.completed")
            status = "ok"
        except UpstreamError as err:
            failure = err
            status = "partial"
        finally:
            waited = (time.monotonic() - began) * 1000
            trace.upstream_ms += waited
            if status != "ok":
                await self._shielded(_close(events))
            if reported is not None:
                used, estimated = reported, False
            else:
                used, estimated = Usage(request.prompt_tokens, _written(model, request, chars)), True
            cost = charge_micro(model, used) if _paid(model, credential) else 0
            result = {"ok": "ok", "partial": "cut", "cancelled": "cancelled"}[status]
            if trace.answering is not None:
                kind = failure.kind if failure else ""
                trace.answering.finish(result, 200, kind, used.prompt, used.completion, response_model)
                trace.answering = None
            trace.attempts.append(Attempt.of(model, result, 200, failure.message if failure else "", waited))
            telemetry.fell_back(route, trace.fallbacks)
            if failure is None or not credential.byok:
                self.health.report(
                    model.provider.name,
                    model.provider.api_base,
                    failure is None,
                    waited,
                    200 if failure is None else 0,
                    failure.message if failure else "",
                )
            settled = self._shielded(
                self._account(trace, model, credential, hold, attempt, used, cost, estimated, status)
            )
            if status == "cancelled":
                self._keep(asyncio.ensure_future(settled))
        funds = await settled
        outcome = self._outcome(trace, model, credential, used, cost, funds, estimated)
        if failure is not None:
            error = DomainError("provider_error", f"the stream from {model.provider.name} broke off: {failure.message}")
            yield router_pb2.StreamEvent(error=orjson.dumps(error.body()))
        else:
            closing = shape.closing() if route != "responses" else None  # a Responses stream closes itself
            if closing is not None:  # the upstream never said why its choices ended: the spec needs a reason
                yield router_pb2.StreamEvent(chunk=orjson.dumps(closing))
            if wants_usage:
                last = held_usage if held_usage is not None else shape.usage_chunk(used.prompt, used.completion)
                last["_metadata"] = _metadata(outcome)
                yield router_pb2.StreamEvent(chunk=orjson.dumps(last))
        yield router_pb2.StreamEvent(outcome=outcome)

    # the steps of an attempt

    def _payload(self, request: Request, stream: bool) -> dict[str, Any]:
        if request.route == "responses":
            # The gateway keeps stored responses (one owner for GET, DELETE and previous_response_id).
            kept = {k: v for k, v in request.body.items() if stream or k not in ("stream", "stream_options")}
            return {**kept, "store": False, **({"stream": True} if stream else {})}
        if not stream:
            return {k: v for k, v in request.body.items() if k not in ("stream", "stream_options")}
        options = request.body.get("stream_options") or {}
        return {**request.body, "stream": True, "stream_options": {**options, "include_usage": True}}

    async def _credential(self, caller: Caller, model: Model, platform_only: bool, trace: _Trace) -> Credential | None:
        provider = model.provider
        if not platform_only and provider.byok:
            if caller.inline_key and caller.inline_provider == provider.name:
                return Credential(caller.inline_key, True)
            stored = await self.vault.provider_key(
                caller.user_id, provider.name, caller.deadline.remaining(self.settings.rpc_timeout)
            )
            if stored:
                return Credential(stored, True)
        if provider.api_key_env is None:
            return Credential(None, False)
        key = os.environ.get(provider.api_key_env)
        if key:
            return Credential(key, False)
        trace.attempts.append(
            Attempt.of(model, "skipped", 0, f"no key for {provider.name} ({provider.api_key_env} unset)")
        )
        return None

    async def _reserve(self, trace: _Trace, model: Model, credential: Credential, attempt: int) -> Hold:
        """The attempt's hold: its worst case, or nothing when it is not charged (it still records the call)."""
        caller = trace.caller
        found = (c.estimated_cost_micro for c in trace.decision.candidates if c.model.id == model.id)
        estimate = next(found, None)
        if estimate is None:
            estimate = worst_case_micro(model, trace.request)
        return await self.ledger.reserve(
            caller.user_id,
            max(1, estimate) if _paid(model, credential) else 0,
            f"{trace.ledger_id}:{attempt}:reserve",
            caller.request_id,
            self._hold_ttl(caller),
            caller.deadline.remaining(self.settings.rpc_timeout),
            caller.payer,
        )

    def _hold_ttl(self, caller: Caller) -> int:
        """A hold lives as long as its request may, plus a margin: a crashed request's funds come back soon."""
        ttl = math.ceil(caller.deadline.remaining()) + self.settings.hold_ttl_margin_seconds
        return max(1, min(ttl, self.settings.hold_ttl_seconds))

    async def _release(self, trace: _Trace, hold: Hold, attempt: int, usage: credits_pb2.UsageRecord | None) -> None:
        key = f"{trace.ledger_id}:{attempt}:release"
        await self.ledger.release(hold.hold_id, key, usage, self.settings.rpc_timeout)

    async def _account(
        self,
        trace: _Trace,
        model: Model,
        credential: Credential,
        hold: Hold,
        attempt: int,
        used: Usage,
        cost: int,
        estimated: bool,
        status: str,
    ) -> Funds:
        """Settle the hold for `cost` (nothing when free or BYOK) with its usage row; what the user has left.

        With `settle_after_answer` the settle is journaled to disk and made while the answer goes out; the
        funds are then the hold's less what the request cost. A settle credits cannot take now stays owed and is
        repeated until it lands (`settlements`); the answer goes out meanwhile, with the funds as the hold left
        them (a lower bound of what is left).
        """
        usage = self._usage(trace, model, used, cost, status, credential.byok, estimated)
        key = f"{trace.ledger_id}:{attempt}:settle"
        timeout = self.settings.rpc_timeout
        if self.settings.settle_after_answer and await self.settlements.settle_later(
            hold.hold_id, cost, key, usage, timeout
        ):
            return Funds(hold.funds.available_micro + max(0, hold.amount_micro - cost), hold.funds.low)
        funds = await self.settlements.settle(hold.hold_id, cost, key, usage, timeout)
        if funds is None:
            return hold.funds
        return funds

    def _usage(
        self,
        trace: _Trace,
        model: Model | None,
        used: Usage,
        cost: int,
        status: str,
        byok: bool = False,
        estimated: bool = False,
    ) -> credits_pb2.UsageRecord:
        decision = trace.decision.as_dict()
        decision["chosen"] = model.id if model is not None else None
        if model is not None and model.deployment_id:
            decision["deployment"] = {"id": model.deployment_id, "region": model.region, "upstream": model.upstream}
        decision["attempts"] = [
            {
                "model": a.model,
                "provider": a.provider,
                "deployment": a.deployment,
                "result": a.result,
                "status": a.status,
                "error": a.error,
            }
            for a in trace.attempts
        ]
        return credits_pb2.UsageRecord(
            request_id=trace.caller.request_id,
            user_id=trace.caller.user_id,
            api_key_id=trace.caller.key_id,
            model=model.id if model is not None else "",
            provider=model.provider.name if model is not None else "",
            deployment=model.upstream if model is not None else "",
            power_level=trace.decision.power_level,
            prompt_tokens=used.prompt,
            completion_tokens=used.completion,
            cache_read_tokens=used.cache_read,
            cache_write_tokens=used.cache_write,
            reasoning_tokens=used.reasoning,
            cost_micro=cost,
            latency_ms=(time.monotonic() - trace.started) * 1000,
            status=status,
            byok=byok,
            fallback_count=trace.fallbacks,
            usage_estimated=estimated,
            route=trace.request.client_api or trace.request.route,
            decision=orjson.dumps(decision),
            end_user=trace.request.end_user,
            tags=trace.request.tags,
        )

    async def _record_failure(self, trace: _Trace, model: Model | None, status: str) -> None:
        """The one usage row of a request that failed (nothing charged)."""
        if model is None and trace.attempts:
            model = trace.catalog.models.get(trace.attempts[-1].model)
        usage = self._usage(trace, model, Usage(), 0, status)
        try:
            await self._shielded(self.ledger.record_usage(usage, f"{trace.ledger_id}:usage", self.settings.rpc_timeout))
        except DomainError as err:
            log.warning("usage of a failed request not recorded: %s", err.message)

    def _failed(
        self, trace: _Trace, model: Model, credential: Credential, err: UpstreamError, began: float, reported: bool
    ) -> None:
        waited = (time.monotonic() - began) * 1000
        trace.upstream_ms += waited
        trace.attempts.append(Attempt.of(model, "error", err.status, err.message, waited))
        # A caller's own key that is refused or rate-limited is that key's problem, not the provider's; a call its
        # caller's short deadline cut says nothing of the provider (one client must not eject it for everyone).
        if reported and not credential.byok:
            provider_fault = err.retryable
            self.health.report(
                model.provider.name, model.provider.api_base, not provider_fault, waited, err.status, err.message
            )
        log.info("attempt on %s failed: %s", model.provider.name, err.message)

    def _exhausted(self, trace: _Trace) -> DomainError:
        tried = [a for a in trace.attempts if a.result != "skipped"]
        if trace.caller.deadline.expired:
            return DomainError("timeout", "the request ran out of time before a provider answered")
        if not tried:
            reasons = "; ".join(a.error for a in trace.attempts) or "no candidate"
            return DomainError("provider_unavailable", f"no provider could be tried: {reasons}")
        parts = ", ".join(
            f"{a.provider} ({'HTTP ' + str(a.status) if a.status else 'unreachable or timed out'})" for a in tried
        )
        unavailable = all(a.status in _UNAVAILABLE_STATUSES for a in tried)
        code = "provider_unavailable" if unavailable else "provider_error"
        return DomainError(code, f"every provider failed: {parts}")

    def _outcome(
        self,
        trace: _Trace,
        model: Model,
        credential: Credential,
        used: Usage,
        cost: int,
        funds: Funds,
        estimated: bool,
    ) -> router_pb2.Outcome:
        return router_pb2.Outcome(
            model=model.id,
            provider=model.provider.name,
            deployment=model.upstream,
            power_level=trace.decision.power_level,
            prompt_tokens=used.prompt,
            completion_tokens=used.completion,
            cache_read_tokens=used.cache_read,
            cache_write_tokens=used.cache_write,
            reasoning_tokens=used.reasoning,
            cost_micro=cost,
            credits_remaining_micro=funds.available_micro,
            credits_low=funds.low,
            byok=credential.byok,
            fallbacks=trace.fallbacks,
            usage_estimated=estimated,
            upstream_ms=trace.upstream_ms,
            requested_model=trace.decision.requested or "",
            reason=_why(trace, model),
            deployment_id=model.deployment_id,
            region=model.region,
        )

    # shielding

    def _keep(self, task: asyncio.Future[Any]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _shielded(self, work: Coroutine[Any, Any, T] | Awaitable[T]) -> T:
        """Run `work` to the end even if this request is cancelled meanwhile."""
        task = asyncio.ensure_future(work)
        self._keep(task)
        return await asyncio.shield(task)


def _why(trace: _Trace, model: Model) -> str:
    """Why `model` answered: the named model, or what stood in for it after which failure, or the level's choice."""
    decision = trace.decision
    if decision.requested == model.id:
        return "requested model"
    failed = [
        f"{a.model}: {'HTTP ' + str(a.status) if a.status else a.error or a.result}"
        for a in trace.attempts
        if a.model != model.id and a.result != "ok"
    ]
    if decision.requested is not None and decision.requested in decision.skipped:
        failed.insert(0, f"{decision.requested}: {decision.skipped[decision.requested]}")
    why = decision.reason_of(model) if decision.requested is not None else decision.reason
    return f"{why} after {'; '.join(failed)}" if failed else why


def _written(model: Model, request: Request, chars: int) -> int:
    """The tokens a reply of `chars` characters is charged when its provider reported none: never past the hold."""
    return min(estimate_tokens(chars), hold_tokens(model, request)[1])


def _paid(model: Model, credential: Credential) -> bool:
    return not (model.free or credential.byok)


def _client_error(err: UpstreamError) -> DomainError:
    if err.status in (400, 413, 422):
        return DomainError("invalid_request", err.message)
    if err.auth:
        return DomainError("provider_auth_failed", err.message)
    return DomainError("provider_error", err.message)


def _on(model: Model, provider: str) -> Provider:
    """The provider entry of `model`'s deployment on `provider` (its own when none is)."""
    return next((p for p in model.places if p.name == provider), model.provider)


def _only_responses(decision: Decision) -> None:
    """A passthrough falls back only among candidates with a deployment whose provider serves the Responses API."""
    serving = [c for c in decision.candidates if any(p.responses for p in c.model.places)]
    if not serving:
        chosen = decision.candidates[0].model
        raise DomainError(
            "invalid_request",
            f"{chosen.id} runs on {chosen.provider.name}, which does not serve the Responses API",
            "model",
        )
    decision.candidates = serving


def _require_dimensions(model: Model, request: Request, body: dict[str, Any]) -> None:
    """`dimensions` is honoured or refused: vectors of another length than asked never reach the client."""
    asked = request.body.get("dimensions")
    if asked is None:
        return
    found = normalize.dimensions_of(body)
    if found != {asked}:
        got = ", ".join(str(n) for n in sorted(found)) or "none"
        raise DomainError(
            "provider_error", f"{model.id} returned vectors of {got} dimensions, not the {asked} asked for"
        )


async def _close(events: AsyncIterator[Any]) -> None:
    close = getattr(events, "aclose", None)
    if close is not None:
        await close()


def _metadata(outcome: router_pb2.Outcome) -> dict[str, Any]:
    return {
        "provider_used": outcome.provider,
        "model_used": outcome.model,
        "power_level": outcome.power_level,
        "cost_incurred": orjson.Fragment(credits(outcome.cost_micro)),
        "credits_remaining": orjson.Fragment(credits(outcome.credits_remaining_micro)),
        "byok": outcome.byok,
        "fallbacks": outcome.fallbacks,
        # The provider reported no usage: tokens (and the charge) are tollgate's estimate of the reply.
        "usage_estimated": outcome.usage_estimated,
        # The split the charge was priced by: cache_read and cache_write are part of input, reasoning of output.
        "tokens": {
            "input": outcome.prompt_tokens,
            "cache_read": outcome.cache_read_tokens,
            "cache_write": outcome.cache_write_tokens,
            "output": outcome.completion_tokens,
            "reasoning": outcome.reasoning_tokens,
        },
        "requested_model": outcome.requested_model or None,
        "reason": outcome.reason,
        "deployment": outcome.deployment_id or None,
        "region": outcome.region or None,
    }
