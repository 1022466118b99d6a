"""A separate OS process that hammers ``quota_reserve`` from several threads (used by the concurrency tests).

Run as ``python -m tests.tenants.quota_worker KEY CALLS THREADS GO_FILE``: it
sets Django up, authenticates the key, announces itself with
``GO_FILE.ready-<pid>``, waits until ``GO_FILE`` exists (so every process
starts at the same moment), then each thread calls ``quota_reserve``
``CALLS`` times for one instance, writes the audit record the pipeline would
write (``units`` = admitted instances), and the process prints one JSON line:
admitted units, refusal codes, limits named and whether each refusal carried
``Retry-After``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import Counter


def main() -> int:
    raw_key, calls, threads, go_file = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")
    import django

    django.setup()
    from django.db import connection

    from audit.services import audit_event_record
    from core.errors import DomainError
    from tenants.services import api_key_authenticate, quota_reserve

    principal = api_key_authenticate(raw_key=raw_key)
    # Tell the parent this process is set up, then wait for the common start signal.
    open(f"{go_file}.ready-{os.getpid()}", "w").close()
    lock = threading.Lock()
    outcome: Counter[str] = Counter()
    limits: Counter[str] = Counter()
    admitted = 0
    retry_after_missing = 0

    def hammer() -> None:
        nonlocal admitted, retry_after_missing
        try:
            for _ in range(calls):
                try:
                    reservation = quota_reserve(principal=principal, units=1)
                except DomainError as exc:
                    with lock:
                        outcome[exc.code] += 1
                        limits[str(exc.extra.get("limit", ""))] += 1
                        if not exc.headers.get("Retry-After"):
                            retry_after_missing += 1
                    continue
                audit_event_record(
                    event_type="request",
                    tenant_id=principal.tenant_id,
                    tenant_slug=principal.tenant_slug,
                    key_prefix=principal.key_prefix,
                    http_status=200,
                    units=reservation.charged_units,
                )
                with lock:
                    admitted += reservation.units
                    outcome["admitted"] += 1
        finally:
            connection.close()

    deadline = time.monotonic() + 60
    while not os.path.exists(go_file) and time.monotonic() < deadline:
        time.sleep(0.01)
    workers = [threading.Thread(target=hammer) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    print(
        json.dumps(
            {
                "admitted_units": admitted,
                "outcome": dict(outcome),
                "limits": dict(limits),
                "retry_after_missing": retry_after_missing,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
