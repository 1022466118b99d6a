"""Shim: ``python -m policy.audit.verify_export`` runs :mod:`audit.verify_export` (moved there).

Exports handed out before the audit trail became a top-level app name this
command in their manifest (``verify_with``), so it keeps working, Django-free.
"""

from __future__ import annotations

import sys

from audit.verify_export import main, verify_export

__all__ = ["main", "verify_export"]

if __name__ == "__main__":
    sys.exit(main())
