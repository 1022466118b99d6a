"""The one status table and the per-app error modules: codes and titles come from the error classes."""

from __future__ import annotations

import pytest

from core.errors import STATUS_ERRORS, DomainError, MethodNotAllowed, NotFound, status_code_and_title


def _all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _all_subclasses(sub)
    return found


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, ("bad_request", "Bad request")),
        (401, ("authentication_failed", "Authentication failed")),
        (403, ("forbidden", "Forbidden")),
        (404, ("not_found", "Not found")),
        (405, ("method_not_allowed", "Method not allowed")),
        (413, ("payload_too_large", "Payload too large")),
        (415, ("unsupported_media_type", "Unsupported media type")),
        (502, ("internal_error", "Internal server error")),
        (418, ("error", "Error")),
    ],
)
def test_a_bare_status_is_rendered_from_its_generic_error_class(status, expected):
    assert status_code_and_title(status) == expected


def test_the_status_table_is_built_from_the_classes():
    assert STATUS_ERRORS[404] is NotFound and STATUS_ERRORS[405] is MethodNotAllowed
    assert all(cls.status == status for status, cls in STATUS_ERRORS.items())


def test_each_app_owns_its_errors_and_every_code_names_one_class():
    import audit.errors
    import inference.errors
    import jobs.errors
    import policy.errors
    import tenants.errors

    owners = {
        "ModelNotFound": inference.errors,
        "ModelVersionNotFound": inference.errors,
        "ModelUnavailable": inference.errors,
        "ModelIntegrityFailed": inference.errors,
        "TenantSuspended": tenants.errors,
        "QuotaExceeded": tenants.errors,
        "QuotaBackendUnavailable": tenants.errors,
        "PolicyDenied": policy.errors,
        "PolicyUnavailable": policy.errors,
        "JobNotFound": jobs.errors,
        "TooManyJobs": jobs.errors,
        "AuditUnavailable": audit.errors,
    }
    for name, module in owners.items():
        assert getattr(module, name).__module__ == module.__name__
    classes = _all_subclasses(DomainError)
    by_code: dict[str, type] = {}
    for cls in classes:
        if cls.__module__.startswith("tests."):
            continue
        assert "code" in vars(cls), f"{cls.__name__} must state its own code"
        assert cls.code not in by_code, f"{cls.__name__} and {by_code[cls.code].__name__} share {cls.code!r}"
        by_code[cls.code] = cls
