"""Quota counters: shared types and the backend protocol (``types``), and the two backends.

``redis`` (one atomic Lua script per request, counters shared by every
process) and ``db`` (conditional UPDATEs, the embedded default) both satisfy
:class:`tenants.quota.types.QuotaBackend`; ``tenants.services.quotas`` is the
facade that picks one and maps refusals to domain errors.
"""
