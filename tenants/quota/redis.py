"""The Redis quota backend: one ``EVALSHA`` per request, counters rebuilt after a loss.

The script is registered once per process (``register_script``) and sent as
``EVALSHA`` on the thread's own connection (``core.redis.redis_evalsha``),
which reloads the source after ``NoScriptError`` (a restarted Redis forgets
scripts), so a restart costs one extra round trip, never a failure.

Rebuild: the script refuses to run while one of its daily/monthly counters is
missing and names the missing ones instead; the caller sums the ``units`` of
the tenant's (or key's) audit events since the window start, stores the sum
with ``SET NX`` (a concurrent process may have seeded it first; the first
value wins and both are equal) and calls the script again.  That costs one
database query per counter per window, or per Redis loss, never per request.
Instances admitted but not yet written to the audit record at the moment of a
flush are the only ones a rebuild can miss.
"""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path

from django.db import DatabaseError
from redis.commands.core import Script

from core.redis import redis_client, redis_evalsha
from tenants.errors import QuotaBackendUnavailable
from tenants.quota.types import (
    Charge,
    QuotaCheck,
    QuotaPolicy,
    QuotaRefusal,
    quota_admission,
    quota_redis_namespace,
)
from tenants.quota_windows import RATE, counter_ttl_seconds, redis_bucket_key, redis_counter_key

_HERE = Path(__file__).resolve().parent
_RESERVE_SOURCE = (_HERE / "quota_reserve.lua").read_text()
_REFUND_SOURCE = (_HERE / "quota_refund.lua").read_text()
_lock = threading.Lock()
_scripts: dict[str, Script] = {}
_SEED_ATTEMPTS = 3


def _script(name: str, source: str) -> Script:
    script = _scripts.get(name)
    if script is None:
        with _lock:
            script = _scripts.get(name)
            if script is None:
                # The SHA is computed locally; no round trip until the first call.
                script = redis_client().register_script(source)
                _scripts[name] = script
    return script


def check_key(check: QuotaCheck) -> str:
    """The Redis key a check reads and writes."""
    namespace = quota_redis_namespace()
    if check.kind == RATE:
        return redis_bucket_key(namespace, check.scope.tenant_id, check.scope.counter_id)
    assert check.window is not None
    return redis_counter_key(namespace, check.scope.tenant_id, check.scope.counter_id, check.window)


def reserve(
    *, checks: list[QuotaCheck], units: int, now: datetime
) -> tuple[tuple[QuotaPolicy, ...], tuple[Charge, ...]]:
    """Run the reserve script (seeding lost counters first); raise ``QuotaRefusal`` when refused."""
    client = redis_client()
    keys = [check_key(check) for check in checks]
    args: list[str] = [str(units)]
    for check in checks:
        if check.kind == RATE:
            args += ["r", str(check.limit), repr(float(check.rate or 0.0))]
        else:
            args += ["c", str(check.limit), "0"]
    script = _script("reserve", _RESERVE_SOURCE)
    for _ in range(_SEED_ATTEMPTS):
        reply = redis_evalsha(script=script, keys=keys, args=args)
        status = int(reply[0])
        if status == 1:
            # Redis truncates Lua numbers to integers, so the script reports bucket tokens in thousandths.
            values = [int(v) for v in reply[1:]]
            return quota_admission(checks=checks, values=values, now=now, redis_keys=keys, token_scale=1000.0)
        if status == 0:
            index, wait_ms, value = int(reply[1]) - 1, int(reply[2]), int(reply[3])
            check = checks[index]
            if check.kind == RATE:
                raise QuotaRefusal(check, retry_after=-(-wait_ms // 1000), current=value / 1000.0)
            assert check.window is not None
            raise QuotaRefusal(check, retry_after=check.window.seconds_left(now), current=value)
        _seed(client, [checks[int(i) - 1] for i in reply[1]], [keys[int(i) - 1] for i in reply[1]], now)
    # Counters vanishing again right after seeding means Redis evicts them (maxmemory):
    # admitting anyway would hand out fresh quotas, so refuse.
    raise QuotaBackendUnavailable("Quota counters could not be kept in Redis; the request was not admitted.")


def refund(*, charges: tuple[Charge, ...], units: int) -> None:
    """Return ``units`` to the charged counters in one round trip."""
    script = _script("refund", _REFUND_SOURCE)
    script(keys=[charge.redis_key for charge in charges], args=[str(units)], client=redis_client())


def _seed(client, checks: list[QuotaCheck], keys: list[str], now: datetime) -> None:
    """Rebuild missing counters from the durable usage record with ``SET NX``."""
    from tenants.selectors import usage_units_since

    pipe = client.pipeline(transaction=False)
    for check, key in zip(checks, keys, strict=True):
        assert check.window is not None
        try:
            used = usage_units_since(
                tenant_id=check.scope.tenant_id,
                since=check.window.start,
                key_prefixes=check.scope.audit_key_prefixes,
            )
        except DatabaseError as exc:
            raise QuotaBackendUnavailable(
                "Quota counters cannot be rebuilt while the database is unavailable."
            ) from exc
        pipe.set(key, used, nx=True, ex=counter_ttl_seconds(check.window, now))
    pipe.execute()
