"""Compatibility package: the audit trail moved to the top-level ``audit`` app.

Only :mod:`policy.audit.verify_export` remains here, because exports handed out
before the move name ``python -m policy.audit.verify_export`` in their manifest.
"""
