"""What the bench scripts share without Django: each backend's environment and a request's audit row.

Importing this module has no side effects and never imports Django, so that
``bench/run.py`` (which only starts subprocesses) and the scripts that call
``django.setup()`` themselves can both use it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("embedded", "postgres+redis")
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/maas_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/9"


def backend_env(name: str, base: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The environment of a process that runs against benchmark backend ``name``; ``base`` is not modified.

    ``embedded`` never carries ``DATABASE_URL`` or ``REDIS_URL``, whatever
    ``base`` holds: a user's own database or Redis must not end up in an
    embedded measurement.  ``postgres+redis`` names the throw-away services of
    ``BENCH_DATABASE_URL`` and ``BENCH_REDIS_URL`` (never the user's
    ``DATABASE_URL``).  Creating that database is the caller's business.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown benchmark backend {name!r}; expected one of {', '.join(BACKENDS)}")
    env = {key: value for key, value in base.items() if key not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        MAAS_VAR_DIR=str(ROOT / "var" / f"bench-{name}"),
        BENCH_ENDPOINTS="true",
        LOG_LEVEL="WARNING",
        # Every variant is measured single-threaded, so that they compare like for like.
        INFERENCE_INTRA_OP_THREADS="1",
    )
    if name == "postgres+redis":
        env["DATABASE_URL"] = base.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
        env["REDIS_URL"] = base.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    return env


def request_audit_fields(
    *,
    request_id: str,
    input_digest: str,
    actor: str,
    tenant_id: int,
    tenant_slug: str,
    key_prefix: str,
    region: str = "eu",
    client_ip: str = "127.0.0.1",
    latency_ms: float = 1.5,
    model_version: int = 1,
    model_sha256: str = "5f" * 32,
    policy_versions: str = "baseline@1",
    label: Any = 0,
    top_probability: float = 0.999,
    deny: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The ``audit_request_record`` keyword arguments of one ``POST /v1/models/digits/predict``.

    The key set and value shapes are those of ``GovernedCall._audit`` in
    ``gateway/pipeline.py`` for a request that was authenticated, had its
    quota reserved and reached a policy decision, so that a benchmark pays for
    the same row the request path writes.  ``deny`` is ``(rule_id,
    reason_code)`` for a request policy refused: policy runs before the quota
    and input validation, so such a row has no units, input digest,
    prediction or ``quota_fail_open``.
    """
    denied = deny is not None
    rule_id, reason_code = deny if deny is not None else ("", "")
    fields: dict[str, Any] = {
        "action": "models.predict",
        "request_id": request_id,
        "method": "POST",
        "path": "/v1/models/digits/predict",
        "http_status": 403 if denied else 200,
        "latency_ms": latency_ms,
        "client_ip": client_ip,
        "purpose": "research",
        "input_digest": "" if denied else input_digest,
        "units": 0 if denied else 1,
        # A batch of one: the pipeline's per-instance summary.
        "prediction": None
        if denied
        else [{"label": label, "top_probability": round(top_probability, 6), "needs_review": False}],
        "needs_review": False,
        "error_code": "policy_denied" if denied else "",
        "raw_input": None,
        "actor": actor,
        "tenant_id": tenant_id,
        "tenant_slug": tenant_slug,
        "key_prefix": key_prefix,
        "region": region,
        "model_name": "digits",
        "model_version": model_version,
        "model_sha256": model_sha256,
        "decision": "deny" if denied else "allow",
        "rule_id": rule_id,
        "reason_code": reason_code,
        "policy_versions": policy_versions,
        "monitor_denials": [],
    }
    if not denied:
        fields["quota_fail_open"] = False
    return fields
