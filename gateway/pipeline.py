"""The governed request pipeline: one implementation for every path to a model.

Order (fixed, no endpoint may skip a step):

1. request id              - ``RequestContextMiddleware`` (already bound)
2. authentication          - ``tenants.services.api_key_authenticate`` (per-process cache)
3. scope                   - the key must hold the operation's scope
4. body limits and parsing - the plan's ``max_body_bytes`` before any JSON is parsed
5. model resolution        - the active (or requested) version, from the per-process registry
6. policy decision         - ``policy.services.policy_decide`` (compiled, cached state)
7. quota reservation       - ``tenants.services.quota_reserve`` (one atomic round trip)
8. input validation        - ``inference.services.inputs_validate`` (against the file's signature)
   (during a rollout: ``inference.routing`` picks stable or the caller's sticky canary
   after the decision on stable, within policy's ``canary_eligibility``, and re-decides
   on the canary's facts; a canary that is not ready in this process leaves stable)
9. inference               - ``inference.services.model_predict``, then the shadows
   (``inference.shadow``: same batch, never answered, summarised into the record)
10. audit                  - one INSERT, before the response exists
11. response               - with the IETF ``RateLimit-*`` headers

Any failure after step 7 refunds the reservation; every outcome after
authentication started (401s included) is audited, and a request whose audit
record cannot be written is answered 503 instead of being served unrecorded.
REST v1, the Open Inference Protocol and batch-job submission all call
:class:`GovernedCall`; they differ only in how they parse bodies and shape
answers.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest

from audit.errors import AuditUnavailable
from audit.services import audit_input_digest, audit_request_record
from audit.services.recording import audit_input_payload
from audit.services.retained import retained_input_store
from core.errors import DomainError, MalformedRequest, PayloadTooLarge, UnsupportedMediaType, error_status_code
from core.logging import current_request_id, set_request_context
from core.sanitize import text_for_record, text_is_clean
from core.tracing import span
from gateway import metrics
from inference.errors import BatchTooLarge, ModelNotFound, ModelVersionNotFound
from inference.review import prediction_review
from inference.routing import ARM_CANARY, ARM_PINNED, ARM_STABLE, ready_model, rollout_arm, rollout_plan_get
from inference.selectors import model_detail_get, model_serving_get
from inference.services import inputs_validate, model_predict
from inference.shadow import shadow_compare
from inference.signature import OutputKind
from monitoring.services import live_batch_record, live_outcome_record
from monitoring.services.webhooks import quota_refusal_notify, quota_thresholds_notify
from policy.errors import PolicyDenied
from policy.evaluator import Decision
from policy.facts import decision_headers
from policy.services import policy_decide, policy_models_visible, review_items_create
from tenants.errors import QuotaExceeded
from tenants.principal import Principal
from tenants.services import api_key_authenticate_request, principal_require_scope, quota_refund, quota_reserve

logger = logging.getLogger("gateway.pipeline")

# Per-instance prediction summaries are kept in the audit record up to this
# batch size; larger batches (jobs) are summarised as counts.
AUDIT_PREDICTION_DETAIL_MAX = 1024


@dataclass
class PredictionResult:
    """What a governed prediction returns to the protocol layer.

    ``labels`` and ``probabilities`` are a classifier's; ``values`` a regression's;
    ``outputs`` holds every output of the graph (raw tensors are answered from it).
    """

    model_name: str
    model_version: int
    labels: list[Any]
    probabilities: np.ndarray | None
    needs_review: list[bool]
    kind: str = OutputKind.PROBABILITIES
    values: np.ndarray | None = None
    outputs: dict[str, np.ndarray] = field(default_factory=dict)


def client_ip(request: HttpRequest) -> str | None:
    """The peer address (a proxy in front is expected to be trusted and configured there)."""
    return request.META.get("REMOTE_ADDR") or None


def missing_model_detail(name: str) -> str:
    """The detail of the 404 for a model name the registry does not know (``inference.selectors``' wording)."""
    return f"No model named {name!r}."


def model_hidden(*, principal: Principal, decision: Decision, facts: Any) -> bool:
    """True when a denial comes from the model being hidden from this caller, not from the request.

    Hidden means absent from the caller's listing: the key's allow-list, or a
    purpose-independent policy restriction.  Such a model must answer like one
    that does not exist (an existence oracle otherwise).  A kill switch is a
    visible, temporary refusal (clients and operators need to tell it from a
    typo), and a purpose-dependent denial is about the request, so both stay 403.
    """
    if decision.rule_id == "api_key.allowed_models":
        return True
    if decision.rule_id.startswith("kill_switch/"):
        return False
    return not policy_models_visible(principal=principal, models=[facts])


def model_name_hidden(*, principal: Principal, name: str) -> bool:
    """True when the caller's listing would not show ``name`` (allow-list or policy)."""
    if not principal.permits_model(name):
        return True
    if not text_is_clean(name):
        return False
    try:
        info = model_detail_get(name=name)
    except DomainError:
        return False
    return not policy_models_visible(principal=principal, models=[info.facts()])


def body_length_check(request: HttpRequest, *, max_bytes: int, limit: str = "this plan's limit") -> None:
    """Refuse a declared ``Content-Length`` that is no number (400) or exceeds ``max_bytes`` (413), unread."""
    declared = request.META.get("CONTENT_LENGTH")
    if not declared:
        return
    # isdecimal, not isdigit: "²" is a digit that int() refuses, and so does Django's own
    # int(CONTENT_LENGTH) when request.body is read, which would otherwise answer 500.
    if not declared.isdecimal():
        raise MalformedRequest("The Content-Length header is not a decimal number of bytes.")
    if int(declared) > max_bytes:
        raise PayloadTooLarge(f"Body of {declared} bytes exceeds {limit} of {max_bytes} bytes.")


def body_read(request: HttpRequest, *, max_bytes: int, limit: str = "this plan's limit") -> bytes:
    """The raw body, within ``max_bytes`` by its declared and by its actual length; 413 otherwise."""
    body_length_check(request, max_bytes=max_bytes, limit=limit)
    try:
        raw = request.body
    except RequestDataTooBig:
        # Django's own ceiling (DATA_UPLOAD_MAX_MEMORY_SIZE) is a size refusal too, not a 500.
        raise PayloadTooLarge(f"The body exceeds the largest accepted size; {limit} is {max_bytes} bytes.") from None
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"Body of {len(raw)} bytes exceeds {limit} of {max_bytes} bytes.")
    return raw


def json_parse(raw: bytes, *, what: str = "The body") -> Any:
    """Decode JSON from a request; anything undecodable is a 400 ``malformed_request``, never a 500."""
    try:
        return json.loads(raw)
    except RecursionError:
        # The C decoder recurses once per nesting level: b"[" * 100000 exhausts the stack.
        raise MalformedRequest(f"{what} is nested too deeply to be parsed as JSON.") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedRequest(f"{what} is not valid JSON: {exc}.") from None


def body_json(request: HttpRequest, *, max_bytes: int, limit: str = "this plan's limit") -> Any:
    """Parse a JSON body within the plan's size limit; clear 4xx errors otherwise."""
    content_type = request.META.get("CONTENT_TYPE", "")
    if content_type and not content_type.split(";")[0].strip().lower().endswith(("/json", "+json")):
        raise UnsupportedMediaType(f"Send application/json, not {content_type.split(';')[0]}.")
    raw = body_read(request, max_bytes=max_bytes, limit=limit)
    if not raw:
        raise MalformedRequest("The request body is empty; send a JSON object.")
    return json_parse(raw)


# The steps a ``Server-Timing`` header reports, in pipeline order (W3C Server Timing).
TIMED_STEPS = ("auth", "model", "policy", "quota", "validate", "infer", "shadow", "audit")

#: The actions whose model a rollout routes (listing and metadata show the stable version).
ROUTED_ACTIONS = frozenset({"predict", "job"})


class GovernedCall:
    """One request through the governed pipeline, audited exactly once whatever happens.

    Use as a context manager::

        with GovernedCall(request, scope="predict") as call:
            call.authenticate()
            ...
            call.respond(status=200)

    Leaving the block with a :class:`DomainError` audits that outcome (status,
    code, refund) and re-raises it for the exception handler; leaving it with
    any other exception audits a 500 and re-raises.
    """

    def __init__(self, request: HttpRequest, *, scope: str | None, endpoint: str):
        self.request = request
        self.scope = scope
        self.endpoint = endpoint
        self.started = time.perf_counter()
        self.principal: Principal | None = None
        self.reservation: Any = None
        self.decision: Decision | None = None
        self.model: Any = None
        self.purpose = ""
        self.input_digest = ""
        self.raw_input: Any = None
        self.units = 0
        self.prediction_summary: Any = None
        self.needs_review = False
        self.audit_seq: int | None = None
        self.extra_detail: dict[str, Any] = {}
        #: True when the request named its version (a rollout then routes nothing).
        self.pinned = False
        #: The versions run after the answer and never returned, with their role ("shadow" or "stable").
        self._shadows: list[tuple[Any, str]] = []
        self._review_items: list[tuple[Any, float]] = []
        # What live statistics count of the served batch once it is recorded (counts, never kept inputs).
        self._live_batch: dict[str, Any] | None = None
        self._audited = False
        self._auth_attempted = False
        #: Milliseconds spent in each step of ``TIMED_STEPS`` (``Server-Timing``).
        self.timings: dict[str, float] = {}

    @contextmanager
    def _timed(self, step: str) -> Iterator[None]:
        # One clock for both views of a step: the Server-Timing header and (when on) its trace span.
        started = time.perf_counter()
        with span(f"gateway.{step}"):
            try:
                yield
            finally:
                self.timings[step] = self.timings.get(step, 0.0) + (time.perf_counter() - started) * 1000.0

    def server_timing(self) -> str:
        """The ``Server-Timing`` value: each step run so far and the total, in milliseconds.

        Only for an authenticated caller (``response_headers`` and ``fail``
        check): an unauthenticated one could otherwise time the key lookup.
        """
        parts = [f"{step};dur={self.timings[step]:.3f}" for step in TIMED_STEPS if step in self.timings]
        parts.append(f"total;dur={(time.perf_counter() - self.started) * 1000.0:.3f}")
        return ", ".join(parts)

    # -- context management ---------------------------------------------------
    def __enter__(self) -> GovernedCall:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            return False
        outcome = self.fail(exc)
        if outcome is not exc:
            raise outcome from exc
        return False

    @property
    def audited(self) -> bool:
        """True once this call's outcome is in the audit trail (it is recorded at most once)."""
        return self._audited

    def fail(self, exc: BaseException) -> BaseException:
        """Record that the call ends with ``exc``: refund, count the refusal, audit it once.

        Returns the exception to answer with: ``exc`` itself, or the
        ``AuditUnavailable`` that replaces it when the outcome could not be
        recorded (nothing is answered unrecorded: that is a 503).
        """
        if isinstance(exc, DomainError):
            status, code = exc.status, exc.code
            if self.decision is not None:  # a denial, or a refusal after the decision: say who decided
                for name, value in decision_headers(self.decision).items():
                    exc.headers.setdefault(name, value)
        else:
            status, code = error_status_code(exc)
            if status >= 500:
                logger.error("pipeline failure", exc_info=exc)
        self.refund()
        if status in (401, 403, 429):
            metrics.refusal(reason=code)
        # Past the first rows of a burst, failed authentications are summed into one aggregated
        # event per address and window (tenants.services.auth_failures) instead of one row each.
        verbatim = getattr(exc, "audit_verbatim", True)
        outcome: BaseException = exc
        if self._auth_attempted and not self._audited and verbatim:
            try:
                self._audit(status=status, error_code=code)
            except AuditUnavailable as audit_exc:
                outcome = audit_exc
        if isinstance(outcome, DomainError) and settings.SERVER_TIMING and self.principal is not None:
            outcome.headers["Server-Timing"] = self.server_timing()
        return outcome

    # -- steps ----------------------------------------------------------------
    def authenticate(self) -> Principal:
        """Steps 2-3: the key, the tenant, the scope (``None``: any key of the tenant)."""
        self._auth_attempted = True
        with self._timed("auth"):
            principal = api_key_authenticate_request(meta=self.request.META)
            self.principal = principal
            set_request_context(tenant=principal.tenant_slug)
            if self.scope is not None:
                principal_require_scope(principal=principal, scope=self.scope)
        return principal

    def parse_body(self) -> Any:
        """Step 4: the body, bounded by the plan."""
        assert self.principal is not None
        body = body_json(self.request, max_bytes=self.principal.limits.max_body_bytes)
        return body

    def resolve_model(self, *, name: str, version: int | None) -> Any:
        """Step 5: the served model (404 for unknown names or versions)."""
        if not text_is_clean(name):
            # No model name holds a control character, and PostgreSQL refuses a NUL in the lookup.
            raise ModelNotFound(missing_model_detail(name))
        self.pinned = version is not None
        try:
            with self._timed("model"):
                self.model = model_serving_get(name=name, version=version)
                if self.pinned and self.principal is not None:
                    self._pinned_canary_check()
        except ModelVersionNotFound:
            # "no such version" would confirm that a hidden model exists.
            if self.principal is not None and model_name_hidden(principal=self.principal, name=name):
                raise ModelNotFound(missing_model_detail(name)) from None
            raise
        return self.model

    def _pinned_canary_check(self) -> None:
        """A pinned rollout canary exists only for callers policy lets be served canaries.

        Checked here without a purpose, so endpoints that never decide (v2
        metadata and readiness) cannot confirm a canary either; ``decide``
        checks again with the request's purpose.
        """
        assert self.principal is not None and self.model is not None
        plan = rollout_plan_get(name=self.model.name)
        if plan is None or plan.canary_version != self.model.version:
            return
        decision = policy_decide(principal=self.principal, model=self.model.facts(), purpose=None, action="list")
        if not decision.canary_allowed:
            raise ModelVersionNotFound(f"Model {self.model.name!r} has no version {self.model.version}.")

    def decide(self, *, purpose: str | None, action: str = "predict") -> Decision:
        """Step 6: policy, plus the key's model allow-list."""
        assert self.principal is not None and self.model is not None
        self.purpose = (purpose or "")[:100]
        if not self.principal.permits_model(self.model.name):
            self.decision = Decision(
                allowed=False,
                rule_id="api_key.allowed_models",
                reason_code="model_not_allowed_for_key",
                reason="This API key is not allowed to call this model.",
                policy_versions="",
            )
        else:
            with self._timed("policy"):
                self.decision = policy_decide(
                    principal=self.principal, model=self.model.facts(), purpose=purpose or None, action=action
                )
        if not self.decision.allowed:
            if model_hidden(principal=self.principal, decision=self.decision, facts=self.model.facts()):
                # The same answer a name that does not exist gets; the audit record keeps the rule.
                raise ModelNotFound(missing_model_detail(self.model.name))
            raise PolicyDenied(
                self.decision.reason, rule_id=self.decision.rule_id, reason_code=self.decision.reason_code
            )
        if action in ROUTED_ACTIONS:
            with self._timed("policy"):
                self._route(purpose=purpose or None, action=action)
        return self.decision

    def _route(self, *, purpose: str | None, action: str) -> None:
        """During a rollout: the caller's version (sticky canary or stable) and the shadows to run.

        Called after the decision on the stable (or pinned) version allowed the
        request.  The canary answers only when the caller's bucket is in its
        share, policy lets this tenant be served a canary, the decision on the
        canary's own facts allows it, and this process has its session ready;
        otherwise stable answers, never a refusal.
        """
        assert self.principal is not None and self.model is not None and self.decision is not None
        plan = rollout_plan_get(name=self.model.name)
        if plan is None:
            return
        record: dict[str, Any] = {"id": plan.id}
        if self.pinned:
            if self.model.version == plan.canary_version and not self.decision.canary_allowed:
                # Pinning must not get round the canary rule: the version is not there for this caller.
                raise ModelVersionNotFound(f"Model {self.model.name!r} has no version {self.model.version}.")
            self.extra_detail["rollout"] = {**record, "arm": ARM_PINNED}
            return
        stable = self.model
        arm = ARM_STABLE
        if plan.canary_version not in (None, stable.version) and (
            rollout_arm(plan=plan, key_prefix=self.principal.key_prefix) == ARM_CANARY
        ):
            canary = ready_model(name=stable.name, version=plan.canary_version)
            if not self.decision.canary_allowed:
                record["canary_skipped"] = "policy"
            elif canary is None:
                record["canary_skipped"] = "not_ready"
            else:
                decision = policy_decide(principal=self.principal, model=canary.facts(), purpose=purpose, action=action)
                if decision.allowed and decision.canary_allowed:
                    self.model, self.decision, arm = canary, decision, ARM_CANARY
                    # The stable version runs on the canary's batch: agreement with stable, per request.
                    self._shadows.append((stable, "stable"))
                else:
                    record["canary_skipped"] = "policy"
        self.extra_detail["rollout"] = {**record, "arm": arm}
        if action != "predict":
            return  # a batch job runs on a worker later; its shadows are not run
        for version in plan.shadow_versions:
            if version in (self.model.version, stable.version):
                continue
            shadow = ready_model(name=stable.name, version=version)
            if shadow is None:
                continue
            facts_decision = policy_decide(
                principal=self.principal, model=shadow.facts(), purpose=purpose, action=action
            )
            if facts_decision.allowed:  # the caller's data goes only where policy lets it
                self._shadows.append((shadow, "shadow"))

    def hidden_model_note(self, *, name: str) -> None:
        """Before a listing-style 404: when ``name`` exists but is hidden from this caller, audit the rule.

        The answer stays the missing-model 404; only the record says which
        rule hid the model (the allow-list, or the listing decision's rule).
        """
        assert self.principal is not None
        if not text_is_clean(name):
            return  # no such name can exist
        try:
            facts = model_detail_get(name=name).facts()
        except DomainError:
            return  # missing indeed: nothing was hidden
        if not self.principal.permits_model(name):
            rule_id, reason_code = "api_key.allowed_models", "model_not_allowed_for_key"
        else:
            decision = policy_decide(principal=self.principal, model=facts, purpose=None, action="list")
            if decision.allowed:
                return
            rule_id, reason_code = decision.rule_id, decision.reason_code
        self.decision = Decision(
            allowed=False, rule_id=rule_id, reason_code=reason_code, reason="hidden from this key", policy_versions=""
        )

    def reserve(self, *, units: int, max_batch: int | None = None) -> None:
        """Step 7: one atomic check-and-consume of every applicable limit."""
        assert self.principal is not None
        limit = max_batch if max_batch is not None else self.principal.limits.max_batch
        if units > limit:
            raise BatchTooLarge(f"Batch of {units} instances exceeds this plan's maximum of {limit}.", max_batch=limit)
        with self._timed("quota"):
            try:
                self.reservation = quota_reserve(principal=self.principal, units=units)
            except QuotaExceeded as exc:
                self._quota_refused(exc)
                raise
        self.units = units
        if self.reservation.charges:
            try:
                # Arithmetic on the reservation; the database only when a threshold is crossed.
                quota_thresholds_notify(
                    tenant_slug=self.principal.tenant_slug, units=units, reservation=self.reservation
                )
            except Exception:  # a notification never fails the request it is about
                logger.exception("quota threshold notification failed")

    def _quota_refused(self, exc: QuotaExceeded) -> None:
        """A refusal by the tenant's quota is its 100 % notification too (usage may stop just below it)."""
        assert self.principal is not None
        try:
            quota_refusal_notify(tenant_slug=self.principal.tenant_slug, error=exc)
        except Exception:  # a notification never changes the answer (the 429) it is about
            logger.exception("quota refusal notification failed")

    def validate(self, instances: Any, *, max_batch: int | None = None) -> dict[str, np.ndarray]:
        """Step 8: every input's presence, shape, type, finiteness and range; one array per input."""
        assert self.principal is not None and self.model is not None
        limit = max_batch if max_batch is not None else self.principal.limits.max_batch
        with self._timed("validate"):
            feeds = inputs_validate(model=self.model, instances=instances, max_batch=limit)
            # The digest covers every input (one input: its bytes, as it always was).
            self.input_digest = audit_input_digest(payload=audit_input_payload(feeds))
        if self.decision is not None and self.decision.retain_raw_input and self.principal is not None:
            # Kept encrypted outside the sealed record, which commits to it by digest and id.
            retained = retained_input_store(
                feeds=feeds,
                input_digest=self.input_digest,
                days=self.decision.raw_input_retention_days,
                tenant_id=self.principal.tenant_id,
                tenant_slug=self.principal.tenant_slug,
                request_id=current_request_id(),
            )
            self.extra_detail["retained_input"] = retained.as_detail()
        return feeds

    def infer(self, batch: np.ndarray | dict[str, np.ndarray]) -> PredictionResult:
        """Step 9 and the human-oversight flags, per output kind.

        Oversight applies when policy sets a review threshold: a classifier's
        prediction needs review when its top probability is below it, a
        regression value when it leaves the model card's plausible range.
        """
        assert self.model is not None and self.decision is not None
        with self._timed("infer"):
            prediction = model_predict(model=self.model, batch=batch)
        metrics.inference_latency(
            model=self.model.name, version=self.model.version, seconds=self.timings["infer"] / 1000.0
        )
        if self._shadows:
            # Inline, after the answer exists and before the audit INSERT: the record must carry
            # the shadow's agreement, and a thread after the response could lose it on a kill.
            with self._timed("shadow"):
                self.extra_detail["shadows"] = [
                    shadow_compare(primary=prediction, model=model, batch=batch, role=role)
                    for model, role in self._shadows
                ]
        summary = prediction_review(
            model=self.model, prediction=prediction, review_threshold=self.decision.review_threshold
        )
        self.needs_review = any(summary.flags)
        self.prediction_summary = summary.audit(detail_max=AUDIT_PREDICTION_DETAIL_MAX)
        self._review_items = summary.review_items()
        # Each flagged instance's index and (for classifiers) probability vector, so a reviewer
        # can tell the items of one request apart and see the alternatives.
        probabilities = prediction.probabilities if summary.kind in OutputKind.CLASSIFIERS else None
        self._live_batch = {
            "feeds": batch,
            "probabilities": probabilities,
            "values": prediction.values if summary.kind == OutputKind.REGRESSION else None,
            "review_flags": sum(summary.flags),
        }
        self._review_instances = [
            (index, probabilities[index] if probabilities is not None else [])
            for index, flag in enumerate(summary.flags)
            if flag
        ]
        return PredictionResult(
            model_name=self.model.name,
            model_version=self.model.version,
            labels=list(prediction.labels),
            probabilities=prediction.probabilities,
            needs_review=summary.flags,
            kind=prediction.kind,
            values=prediction.values,
            outputs=prediction.outputs,
        )

    def record_success(self, *, status: int = 200) -> dict[str, str]:
        """Step 10: the audit INSERT, then review items; returns the response headers."""
        self._audit(status=status, error_code="")
        if self.needs_review and self.audit_seq is not None:
            review_items_create(
                audit_seq=self.audit_seq,
                request_id=current_request_id(),
                principal=self.principal,
                model=self.model.facts(),
                predictions=self._review_items,
                instances=self._review_instances,
            )
        return self.response_headers()

    def response_headers(self) -> dict[str, str]:
        """``RateLimit-*`` headers of the reservation, if any, and the decision facts (``policy.facts``)."""
        headers = decision_headers(self.decision) if self.decision is not None else {}
        if self.reservation is not None:
            headers.update(self.reservation.headers())
        if settings.SERVER_TIMING and self.principal is not None:
            headers["Server-Timing"] = self.server_timing()
        return headers

    def refund(self) -> None:
        """Give back everything still reserved (a request that ends up serving nothing)."""
        if self.reservation is not None and self.units:
            try:
                quota_refund(reservation=self.reservation)
            except DomainError:
                logger.warning("quota refund failed; counters are rebuilt from the audit trail")
            self.units = 0

    # -- internals ------------------------------------------------------------
    def _audit(self, *, status: int, error_code: str) -> None:
        self._audited = True
        principal, model, decision = self.principal, self.model, self.decision
        latency = (time.perf_counter() - self.started) * 1000.0
        fields: dict[str, Any] = {
            "action": self.endpoint,
            "request_id": current_request_id(),
            "method": self.request.method or "",
            # Escaped, keys redacted: a NUL or a key in the URL must neither fail the INSERT nor be kept.
            "path": text_for_record(self.request.path, max_length=300),
            "http_status": status,
            "latency_ms": round(latency, 3),
            "client_ip": client_ip(self.request),
            "purpose": self.purpose,
            "input_digest": self.input_digest,
            "units": self.units,
            "prediction": self.prediction_summary,
            "needs_review": self.needs_review,
            "error_code": error_code,
            "raw_input": self.raw_input,
        }
        detail = dict(self.extra_detail)
        if decision is not None and decision.monitor_effects:
            detail["monitor_effects"] = list(decision.monitor_effects)
        if detail:
            fields["detail"] = detail
        if principal is not None:
            fields.update(
                actor=principal.actor,
                tenant_id=principal.tenant_id,
                tenant_slug=principal.tenant_slug,
                key_prefix=principal.key_prefix,
                region=principal.region,
            )
        if model is not None:
            fields.update(model_name=model.name, model_version=model.version, model_sha256=model.sha256)
        if decision is not None:
            fields.update(
                decision="allow" if decision.allowed else "deny",
                rule_id=decision.rule_id,
                reason_code=decision.reason_code,
                policy_versions=decision.policy_versions,
                monitor_denials=list(decision.monitor_denials),
            )
        if self.reservation is not None:
            fields["quota_fail_open"] = bool(getattr(self.reservation, "fail_open", False))
        try:
            with self._timed("audit"):
                seq = audit_request_record(**fields)
        except AuditUnavailable:
            # Nothing may be served unrecorded: give the quota back and answer 503.
            self.refund()
            metrics.audit_failed()
            raise
        self.audit_seq = seq
        metrics.audit_written()
        if model is not None:
            # Post-market monitoring counts what was recorded: every outcome on a known model, and the
            # served batch's bins (monitoring.live); in memory, flushed per window outside the request.
            live_outcome_record(model=model, status=status, denied=decision is not None and not decision.allowed)
            if self._live_batch is not None and status < 400:
                live_batch_record(model=model, **self._live_batch)
            self._live_batch = None


def rollout_assignment(*, principal: Principal, name: str, stable_version: int) -> dict[str, Any]:
    """Which version an unpinned prediction by this caller gets now, and why (``GET /v1/models/{name}``).

    The same rules as :meth:`GovernedCall._route` with no purpose: the sticky
    bucket, the canary rule of policy, the canary's own decision and its
    readiness in this process.
    """
    plan = rollout_plan_get(name=name)
    if plan is None:
        return {"assigned_version": stable_version, "rollout": None}
    arm, version, note = ARM_STABLE, stable_version, ""
    if plan.canary_version not in (None, stable_version) and (
        rollout_arm(plan=plan, key_prefix=principal.key_prefix) == ARM_CANARY
    ):
        canary = ready_model(name=name, version=plan.canary_version)
        decision = policy_decide(principal=principal, model=canary.facts(), purpose=None) if canary else None
        if canary is None:
            note = "not_ready"
        elif not (decision.allowed and decision.canary_allowed):
            note = "policy"
        else:
            arm, version = ARM_CANARY, canary.version
    rollout: dict[str, Any] = {"id": plan.id, "arm": arm}
    if note:
        rollout["canary_skipped"] = note
    return {"assigned_version": version, "rollout": rollout}
