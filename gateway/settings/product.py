"""The gateway's own settings: keys, quotas, policy, inference and audit."""

from __future__ import annotations

from core.env import VAR_DIR, env_bool, env_float, env_int, env_list, env_str, is_production, secret_from_env_or_file

# API keys: HMAC-SHA-256 with this server-side pepper (never stored with the keys).
API_KEY_PEPPER = secret_from_env_or_file("API_KEY_PEPPER", "api-key-pepper")
API_KEY_PRODUCT_PREFIX = env_str("API_KEY_PRODUCT_PREFIX", "maas")
API_KEY_ROTATION_GRACE_HOURS = env_float("API_KEY_ROTATION_GRACE_HOURS", 24.0)

# How often a process checks whether keys, policies or models changed elsewhere.
# Revocation must reach every process within 2 s; one check a second bounds it.
INVALIDATION_CHECK_SECONDS = env_float("INVALIDATION_CHECK_SECONDS", 1.0)

QUOTA_FAIL_OPEN = env_bool("QUOTA_FAIL_OPEN", False)

# Failed authentication per client address (tenants.services.auth_failures): past the limit in a
# window, 429 with Retry-After; past the verbatim count, one aggregated audit event per window.
AUTH_FAILURE_WINDOW_SECONDS = 60
AUTH_FAILURE_LIMIT = env_int("AUTH_FAILURE_LIMIT", 30)
AUTH_FAILURE_VERBATIM = min(env_int("AUTH_FAILURE_VERBATIM", 10), AUTH_FAILURE_LIMIT)

MODEL_STORE_DIR = env_str("MODEL_STORE_DIR", str(VAR_DIR / "models"))
DEFAULT_MODEL_NAME = env_str("DEFAULT_MODEL_NAME", "digits")
INFERENCE_PROVIDERS = env_list("INFERENCE_PROVIDERS", [])
# One thread per session by default: several gunicorn workers share two cores.
INFERENCE_INTRA_OP_THREADS = env_int("INFERENCE_INTRA_OP_THREADS", 1)
INFERENCE_MAX_BATCH = env_int("INFERENCE_MAX_BATCH", 1024)

AUDIT_SIGNING_KEY = env_str("AUDIT_SIGNING_KEY", "")
AUDIT_SIGNING_KEY_FILE = env_str("AUDIT_SIGNING_KEY_FILE", str(VAR_DIR / "audit-signing-key.pem"))
AUDIT_SEAL_INTERVAL_SECONDS = env_int("AUDIT_SEAL_INTERVAL_SECONDS", 60)
AUDIT_RETENTION_FLOOR_DAYS = 180
AUDIT_DEFAULT_RETENTION_DAYS = max(AUDIT_RETENTION_FLOOR_DAYS, env_int("AUDIT_DEFAULT_RETENTION_DAYS", 365))
AUDIT_SEAL_BLOCK_SIZE = env_int("AUDIT_SEAL_BLOCK_SIZE", 10_000)
AUDIT_SEAL_LAG_SECONDS = env_float("AUDIT_SEAL_LAG_SECONDS", 2.0)
# Usage rollups (tenants.services.usage_rollups): events per batch transaction, batches per beat run,
# and how long a passed but invisible audit seq is watched for a late commit.
USAGE_ROLLUP_BATCH_SIZE = env_int("USAGE_ROLLUP_BATCH_SIZE", 5000)
USAGE_ROLLUP_MAX_BATCHES = env_int("USAGE_ROLLUP_MAX_BATCHES", 200)
USAGE_ROLLUP_GAP_TTL_SECONDS = env_float("USAGE_ROLLUP_GAP_TTL_SECONDS", 3600.0)
# PostgreSQL: monthly partitions of the event table kept created this many months ahead (audit.partitions_ensure).
AUDIT_PARTITION_MONTHS_AHEAD = env_int("AUDIT_PARTITION_MONTHS_AHEAD", 3)
# Post-market monitoring (monitoring app): live statistics are counted per process in the request path
# and flushed per window by a thread outside it; beat judges each window after the grace period.
MONITORING_LIVE_STATS = env_bool("MONITORING_LIVE_STATS", True)
# At least one second (a zero window has no start); short windows are for demonstrations and the end-to-end
# test, whose whole supervision loop must fit in seconds; production keeps minutes.
MONITORING_WINDOW_SECONDS = max(1, env_int("MONITORING_WINDOW_SECONDS", 300))
MONITORING_GRACE_SECONDS = env_int("MONITORING_GRACE_SECONDS", 60)
MONITORING_FLUSH_THREAD = env_bool("MONITORING_FLUSH_THREAD", True)
# Incident reporting deadlines in days per statutory category (EU AI Act Art. 73: 15 by default, 10 after a
# death, 2 for a widespread infringement or a critical-infrastructure disruption); "category=days,...".
INCIDENT_DEADLINE_DAYS = {
    name.strip(): int(days)
    for name, _, days in (
        item.partition("=")
        for item in env_list(
            "INCIDENT_DEADLINE_DAYS",
            ["default=15", "death=10", "widespread_infringement=2", "critical_infrastructure=2"],
        )
    )
}
# Without an escalated alert, an incident's requests are those of this many hours before it opened.
INCIDENT_LOOKBACK_HOURS = env_float("INCIDENT_LOOKBACK_HOURS", 24.0)
# Signed webhooks (monitoring.services.webhooks): quota thresholds in percent of a tenant's daily/monthly quota,
# attempts before a delivery is dead-lettered, the first retry's delay (doubling each time), the request timeout.
QUOTA_WEBHOOK_THRESHOLDS = [int(p) for p in env_list("QUOTA_WEBHOOK_THRESHOLDS", ["80", "100"])]
WEBHOOK_MAX_ATTEMPTS = max(1, env_int("WEBHOOK_MAX_ATTEMPTS", 6))
WEBHOOK_BACKOFF_SECONDS = env_float("WEBHOOK_BACKOFF_SECONDS", 30.0)
WEBHOOK_TIMEOUT_SECONDS = env_float("WEBHOOK_TIMEOUT_SECONDS", 5.0)
# Tenant webhooks (POST /v1/webhooks): https to public addresses only; tests and local development may allow
# loopback and private addresses (and http to loopback).  Never in production: it opens the worker to SSRF.
WEBHOOK_ALLOW_PRIVATE_URLS = env_bool("WEBHOOK_ALLOW_PRIVATE_URLS", False)
WEBHOOK_MAX_ENDPOINTS_PER_TENANT = max(1, env_int("WEBHOOK_MAX_ENDPOINTS_PER_TENANT", 10))
# A pending delivery this long past its next attempt is re-enqueued by the recovery beat task.
WEBHOOK_RECOVER_GRACE_SECONDS = env_float("WEBHOOK_RECOVER_GRACE_SECONDS", 120.0)
INCIDENT_BUNDLE_DIR = env_str("INCIDENT_BUNDLE_DIR", str(VAR_DIR / "incident-bundles"))
AUDIT_EXPORT_PAGE_SIZE = env_int("AUDIT_EXPORT_PAGE_SIZE", 2000)
# On PostgreSQL, read the next page on a second connection while this one is encoded (audit/services/export.py).
AUDIT_EXPORT_READ_AHEAD = env_bool("AUDIT_EXPORT_READ_AHEAD", True)
AUDIT_EXPORT_DIRECT_MAX_ROWS = env_int("AUDIT_EXPORT_DIRECT_MAX_ROWS", 50_000)
QUOTA_REDIS_PREFIX = env_str("QUOTA_REDIS_PREFIX", "maas:q")
AUDIT_INPUT_DIGEST_KEY = secret_from_env_or_file("AUDIT_INPUT_DIGEST_KEY", "audit-input-digest-key")
EXPORT_DIR = env_str("EXPORT_DIR", str(VAR_DIR / "exports"))
# Signed checkpoints leave the database at every seal (audit.services.checkpoints):
# the primary log is mandatory; sinks (directories, http(s) witness URLs) are best effort unless required.
AUDIT_CHECKPOINT_DIR = env_str("AUDIT_CHECKPOINT_DIR", str(VAR_DIR / "checkpoints"))
AUDIT_CHECKPOINT_SINKS = env_list("AUDIT_CHECKPOINT_SINKS", [])
AUDIT_CHECKPOINT_SINKS_REQUIRED = env_bool("AUDIT_CHECKPOINT_SINKS_REQUIRED", False)
# An empty trail's first seal may open the chain by itself (outside production an operator need not).
AUDIT_CHAIN_AUTO_START = env_bool("AUDIT_CHAIN_AUTO_START", not is_production())

JOBS_DIR = env_str("JOBS_DIR", str(VAR_DIR / "jobs"))
# Jobs may carry far larger bodies than synchronous predictions (100k instances inline).
JOB_MAX_BODY_BYTES = env_int("JOB_MAX_BODY_BYTES", 64 * 1024 * 1024)
# Progress is stored (and a redelivered job resumes) at chunk granularity.
JOB_CHUNK_SIZE = env_int("JOB_CHUNK_SIZE", 2048)
# A worker that stops renewing its lease for this long is presumed dead; its job is resumed elsewhere.
JOB_LEASE_SECONDS = env_int("JOB_LEASE_SECONDS", 30)
# A succeeded job's results are deleted this long after it ends (the job row stays and says so);
# raw inputs are deleted as soon as a job ends, whatever its outcome.
JOB_RESULTS_TTL_DAYS = env_float("JOB_RESULTS_TTL_DAYS", 7.0)

METRICS_TOKEN = env_str("METRICS_TOKEN", "")

# A W3C ``Server-Timing`` header (auth, model, policy, quota, validate, infer, audit, total) on every
# answer to an authenticated caller; cheap enough to leave on, off for deployments that must not show it.
SERVER_TIMING = env_bool("SERVER_TIMING", True)

# Mounts the benchmark-only ablation endpoints (bench/run.py sets it); never in production.
BENCH_ENDPOINTS = env_bool("BENCH_ENDPOINTS", False)
