"""Fixtures of the policy tests: a clean per-process policy cache and baseline control."""

from __future__ import annotations

import pytest

from policy.selectors import policy_state_cache_clear


@pytest.fixture(autouse=True)
def _fresh_policy_state():
    """Each test compiles policy state from its own database content.

    Test transactions roll back the generation counter too, so a cached state
    from an earlier test could otherwise look current.
    """
    policy_state_cache_clear()
    yield
    policy_state_cache_clear()


@pytest.fixture
def no_baseline(db):
    """Disable the migrated baseline policy so a test sees only the policies it creates."""
    from policy.models import Policy

    Policy.objects.filter(name="baseline").update(enabled=False)


@pytest.fixture
def staff_user(db, django_user_model):
    """A staff user with every permission of the policy app and read access to the audit trail."""
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user(username="alice", password="pw-alice-123", is_staff=True)
    perms = Permission.objects.filter(content_type__app_label="policy") | Permission.objects.filter(
        content_type__app_label="audit", codename="view_auditevent"
    )
    user.user_permissions.set(perms)
    return user
