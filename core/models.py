"""The foundation's model: cross-process invalidation generations.

``Generation`` is a tiny table of counters, one per kind of cached state
(``keys``, ``policy``, ``models``).  A write that changes such state bumps the
counter in the same transaction; every process compares its counters at most
once per ``INVALIDATION_CHECK_SECONDS`` and drops its local caches when one
moved.  That bounds staleness (revocation, suspension, policy edits, model
activation) to about a second across all processes without a query per
request, and needs no Redis.
"""

from django.db import models


class Generation(models.Model):
    """A monotonically increasing counter for one kind of cached state."""

    kind = models.CharField(max_length=32, primary_key=True)
    value = models.BigIntegerField(default=0)

    class Meta:
        # Created by the gateway app's first migration; moved here state-only (core 0001).
        db_table = "gateway_generation"

    def __str__(self) -> str:
        return f"{self.kind}={self.value}"
