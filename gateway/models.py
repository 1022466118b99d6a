"""The gateway app defines no model: Generation lives in ``core.models``, BatchJob in ``jobs.models``.

This empty module stays so that Django's model discovery for the ``gateway``
app finds nothing here rather than anything stale on the import path.
"""
