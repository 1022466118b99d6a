"""Backing services: database, cache, Redis and Celery.

Integrations switch on by presence: ``DATABASE_URL`` unset means SQLite in
``var/`` (WAL mode), ``REDIS_URL`` unset means no Redis anywhere.  The embedded
fallbacks still work across several processes (file cache, filesystem broker,
database-backed quota counters), so ``make run`` behaves like production.
"""

from __future__ import annotations

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from audit.schedule import audit_beat_schedule
from core.env import VAR_DIR, env_float, env_int, env_str

DATABASE_URL = env_str("DATABASE_URL", "")
if DATABASE_URL:
    _db = dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60), conn_health_checks=True)
    if _db["ENGINE"] == "django.db.backends.postgresql":
        # Django's backend, checking only connections idle longer than this (one round trip per request saved).
        _db["ENGINE"] = "core.db.postgresql"
        _db["HEALTH_CHECK_IDLE_SECONDS"] = env_float("DB_HEALTH_CHECK_IDLE_SECONDS", 5.0)
        _db.setdefault("OPTIONS", {})
        _db["OPTIONS"].setdefault("connect_timeout", env_int("DB_CONNECT_TIMEOUT", 3))
    # Lets parallel test runs (developers' helpers, CI jobs) use separate test databases.
    if env_str("MAAS_TEST_DATABASE", ""):
        _db["TEST"] = {"NAME": env_str("MAAS_TEST_DATABASE", "")}
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    _SQLITE_SYNCHRONOUS = env_str("SQLITE_SYNCHRONOUS", "FULL").upper()
    if _SQLITE_SYNCHRONOUS not in ("FULL", "NORMAL", "EXTRA"):
        raise ImproperlyConfigured(f"SQLITE_SYNCHRONOUS must be FULL, NORMAL or EXTRA, not {_SQLITE_SYNCHRONOUS!r}")
    _db = {
        "ENGINE": "django.db.backends.sqlite3",
        # MAAS_SQLITE_PATH lets end-to-end tests point server processes at the test database.
        "NAME": env_str("MAAS_SQLITE_PATH", "") or str(VAR_DIR / "db.sqlite3"),
        # Persistent, like PostgreSQL's: reopening per request re-ran the PRAGMAs and
        # checkpointed the WAL on every close: over 1 ms of CPU per governed request.
        "CONN_MAX_AGE": env_int("DB_CONN_MAX_AGE", 60),
        "OPTIONS": {
            # WAL lets readers run beside the single writer of several gunicorn
            # workers; IMMEDIATE takes the write lock up front, which avoids
            # SQLITE_BUSY deadlocks when two transactions upgrade read->write.
            # FULL syncs the WAL at every commit: an audit record is on disk before its
            # response leaves, as on PostgreSQL.  NORMAL is faster but may lose the last
            # commits on power loss (never on a process crash).
            "init_command": f"PRAGMA journal_mode=WAL; PRAGMA synchronous={_SQLITE_SYNCHRONOUS};",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        },
        "TEST": {"NAME": str(VAR_DIR / "test-db.sqlite3")},
    }
DATABASES = {"default": _db}
DATABASE_IS_POSTGRES = DATABASES["default"]["ENGINE"] == "core.db.postgresql"
# Least privilege (README "Database roles"): DATABASE_URL is the application role the
# gateway and workers use; DATABASE_OWNER_URL, when set, is the role that owns the schema,
# runs migrations (manage.py bootstrap) and owns the audit purge function.  Unset, the one
# role of DATABASE_URL does both, and the database cannot keep it from the audit tables.
DATABASE_OWNER_URL = env_str("DATABASE_OWNER_URL", "")
# Not a second alias: bootstrap reconnects the default alias as this role while it migrates
# (gateway.db_roles.connected_as_owner), so data migrations and post_migrate run as the owner too.
DATABASE_OWNER: dict | None = None
if DATABASE_OWNER_URL and DATABASE_IS_POSTGRES:
    DATABASE_OWNER = dj_database_url.parse(DATABASE_OWNER_URL)
elif DATABASE_OWNER_URL:
    raise ImproperlyConfigured("DATABASE_OWNER_URL needs a PostgreSQL DATABASE_URL (SQLite has no roles).")
# Optional: a login with CREATEROLE (the server's superuser on a self-hosted PostgreSQL). With it,
# bootstrap creates the owner role of DATABASE_OWNER_URL and the application role of DATABASE_URL
# when they are missing; never used by the gateway or the workers at run time.
DATABASE_ADMIN_URL = env_str("DATABASE_ADMIN_URL", "")

REDIS_URL = env_str("REDIS_URL", "")
# Seconds to wait for Redis before a quota check fails (closed: 503, or open when QUOTA_FAIL_OPEN).
# Short so an outage is a quick answer; a loaded host whose Redis answers slower needs more.
REDIS_SOCKET_TIMEOUT = env_float("REDIS_SOCKET_TIMEOUT", 0.5)

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "maas",
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "SOCKET_CONNECT_TIMEOUT": 1,
                "SOCKET_TIMEOUT": 1,
            },
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

_broker_dir = VAR_DIR / "broker"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "") or REDIS_URL or "filesystem://"
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        # The worker looks for messages this often when idle, and takes at most one per look while busy
        # (prefetch 1): kombu's 1 s default caps the embedded stack at about one task a second, so
        # a beat that sends more (seals, window evaluations, webhook deliveries) would see messages
        # expire unread.  Listing one directory ten times a second costs an idle worker next to nothing.
        "polling_interval": env_float("CELERY_BROKER_POLLING_SECONDS", 0.1),
    }
elif CELERY_BROKER_URL.startswith("redis"):
    # A job left unacknowledged by a killed worker is redelivered after this.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 600)}
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 3600)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 3300)
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE: dict = {
    "batch-jobs-recover": {"task": "gateway.jobs.tasks.batch_jobs_recover_task", "schedule": 30.0},
    "batch-jobs-expire": {"task": "jobs.tasks.batch_jobs_expire_task", "schedule": 3600.0},
    # One aggregated audit event per address and window of failed authentication (tenants.services.auth_failures).
    "auth-floods-flush": {"task": "tenants.auth_floods_flush", "schedule": 60.0},
    # Usage rollups (tenants.services.usage_rollups): reads add only the events past the watermark,
    # so the interval bounds how many events a usage read scans, not whether it is exact.
    "usage-rollups-advance": {
        "task": "tenants.usage_rollups_advance",
        "schedule": env_float("USAGE_ROLLUP_INTERVAL_SECONDS", 10.0),
    },
    # Canary/shadow rollouts past a threshold are rolled back (inference.services.rollouts).
    "rollouts-evaluate": {
        "task": "inference.rollouts_evaluate",
        "schedule": env_float("ROLLOUT_EVALUATE_INTERVAL_SECONDS", 30.0),
    },
    # Post-market monitoring: judge each closed window of live statistics (monitoring.services.monitors).
    "monitoring-windows-evaluate": {
        "task": "monitoring.windows_evaluate_due",
        "schedule": env_float("MONITORING_EVALUATE_INTERVAL_SECONDS", 60.0),
    },
    # Webhook deliveries left pending by a broker outage, once overdue (monitoring.services.webhooks).
    "webhook-deliveries-recover": {
        "task": "monitoring.webhook_deliveries_recover",
        "schedule": env_float("WEBHOOK_RECOVER_INTERVAL_SECONDS", 60.0),
    },
}
# Defaults of a new rollout's automatic-rollback thresholds (each rollout may set its own).
ROLLOUT_MAX_ERROR_RATE = env_float("ROLLOUT_MAX_ERROR_RATE", 0.05)
ROLLOUT_MIN_REQUESTS = env_int("ROLLOUT_MIN_REQUESTS", 50)
# Audit sealing (every AUDIT_SEAL_INTERVAL_SECONDS) and the daily retention purge.
CELERY_BEAT_SCHEDULE.update(audit_beat_schedule(seal_interval_seconds=env_int("AUDIT_SEAL_INTERVAL_SECONDS", 60)))
