"""The checks an accepted job must pass again before each chunk it runs.

A job is admitted once, when it is submitted, but it may run for minutes or
wait in the queue for hours.  Suspending the tenant, revoking (or letting
expire) the key, engaging a kill switch or changing policy must reach that
work too, exactly as it reaches the next request: so before every chunk the
worker re-reads the key and the tenant from the database (not from the
per-process cache, which may lag by a second) and re-decides the job's
policy on freshly checked policy state.  A refusal is the same domain error a
request would get, so the job ends with the code the caller already knows.
"""

from __future__ import annotations

from typing import Any

from core.errors import DomainError, InvalidApiKey
from core.invalidation import clock
from jobs.models import BatchJob
from policy.errors import PolicyDenied
from policy.services import policy_decide
from tenants.errors import ApiKeyExpired, ApiKeyRevoked, TenantSuspended
from tenants.selectors import api_key_lookup, api_key_status, principal_for_key
from tenants.services import principal_require_scope

JOB_SCOPE = "jobs"


def batch_job_recheck(*, job: BatchJob, model: Any) -> None:
    """Raise the request-time refusal (401/403 ``DomainError``) if ``job`` may no longer run.

    Checks, in the order a request meets them: the key (unknown, revoked,
    expired), the tenant (suspended), the key's scope and model allow-list,
    then policy (kill switches first, as the evaluator orders them).
    """
    key = api_key_lookup(prefix=job.key_prefix)
    if key is None or key.pk != job.key_id:
        raise InvalidApiKey("The API key that submitted this job no longer exists.")
    status = api_key_status(key=key)
    if status == "revoked":
        raise ApiKeyRevoked("The API key that submitted this job has been revoked.")
    if status == "expired":
        raise ApiKeyExpired("The API key that submitted this job has expired.")
    if not key.tenant.is_active:
        raise TenantSuspended("The tenant of this job is suspended.")
    principal = principal_for_key(key=key)
    principal_require_scope(principal=principal, scope=JOB_SCOPE)
    if not principal.permits_model(model.name):
        raise PolicyDenied(
            "This API key is no longer allowed to call this model.",
            rule_id="api_key.allowed_models",
            reason_code="model_not_allowed_for_key",
        )
    # Read the policy generation now rather than up to a second from now: a kill
    # switch engaged while the previous chunk ran stops the very next one.
    clock.reset()
    decision = policy_decide(principal=principal, model=model.facts(), purpose=job.purpose or None, action="job")
    if not decision.allowed:
        raise PolicyDenied(decision.reason, rule_id=decision.rule_id, reason_code=decision.reason_code)


def refusal_detail(exc: DomainError) -> dict[str, Any]:
    """What the job's final audit event records about a refusal (code, rule, reason code)."""
    detail: dict[str, Any] = {"refusal": exc.code}
    for name in ("rule_id", "reason_code"):
        value = exc.extra.get(name)
        if value:
            detail[name] = value
    return detail


__all__ = ["JOB_SCOPE", "batch_job_recheck", "refusal_detail"]
