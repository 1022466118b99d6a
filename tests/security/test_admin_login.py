"""Issue 13, item 4: the admin login resists guessing.

30 wrong passwords and then the right one used to log in, and HTTP Basic on
the audit export was an unthrottled password oracle.  Now django-axes locks
out by username and by address (audited, unlockable by staff), the export
APIs take only an admin session, and staff with a TOTP device (every
superuser when required) must enter its code.
"""

from __future__ import annotations

import base64

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.models import AuditEvent
from tests.support import assert_problem

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

PASSWORD = "correct-horse-battery-9"
LOGIN = "/admin/login/"


@pytest.fixture
def staff(settings):
    settings.AXES_FAILURE_LIMIT = 5
    return get_user_model().objects.create_user("alice", password=PASSWORD, is_staff=True, is_superuser=True)


def _login(client, username, password, address="192.0.2.10", **extra):
    data = {"username": username, "password": password, "next": "/admin/", **extra}
    return client.post(LOGIN, data, REMOTE_ADDR=address)


def _logged_in(client) -> bool:
    return client.get("/admin/", REMOTE_ADDR="192.0.2.10").status_code == 200


def _current_code(device: TOTPDevice) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    return f"{totp.token():0{device.digits}d}"


def test_guessing_a_password_locks_the_account_out_even_for_the_right_one(client, staff):
    for attempt in range(30):
        response = _login(client, "alice", f"guess-{attempt}")
        assert response.status_code in (200, 429)
    response = _login(client, "alice", PASSWORD)
    assert response.status_code == 429
    assert not _logged_in(client)
    lockouts = AuditEvent.objects.filter(action="admin.lockout")
    assert lockouts.exists() and lockouts.first().detail["username"] == "alice"


def test_guessing_from_another_address_is_locked_by_username(client, staff):
    for attempt in range(5):
        _login(client, "alice", f"guess-{attempt}", address=f"198.51.100.{attempt}")
    assert _login(client, "alice", PASSWORD, address="198.51.100.77").status_code == 429


def test_spraying_usernames_from_one_address_is_locked_by_address(client, staff):
    for attempt in range(5):
        _login(client, f"user{attempt}", "guess", address="203.0.113.50")
    assert _login(client, "alice", PASSWORD, address="203.0.113.50").status_code == 429
    # X-Forwarded-For is the client's to forge: it does not pick a fresh address.
    response = client.post(
        LOGIN,
        {"username": "alice", "password": PASSWORD, "next": "/admin/"},
        REMOTE_ADDR="203.0.113.50",
        HTTP_X_FORWARDED_FOR="10.9.8.7",
    )
    assert response.status_code == 429


def test_staff_unlock_by_deleting_the_attempts(client, staff):
    for attempt in range(5):
        _login(client, "alice", f"guess-{attempt}")
    assert _login(client, "alice", PASSWORD).status_code == 429
    AccessAttempt.objects.all().delete()  # what "delete" on Axes > Access attempts in the admin does
    assert _login(client, "alice", PASSWORD).status_code == 302
    assert _logged_in(client)


def test_the_audit_export_refuses_http_basic(client, staff):
    token = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    response = client.get("/v1/audit/export", HTTP_AUTHORIZATION=f"Basic {token}")
    body = assert_problem(response, 401, "staff_authentication_required")
    assert not response["WWW-Authenticate"].startswith("Basic") and "Basic" not in body["detail"]


def test_staff_with_a_device_must_enter_its_code(client, staff):
    device = TOTPDevice.objects.create(user=staff, name="phone", confirmed=True)
    assert _login(client, "alice", PASSWORD).status_code == 200  # the form again, asking for the code
    assert not _logged_in(client)
    wrong = "000000" if _current_code(device) != "000000" else "111111"
    assert _login(client, "alice", PASSWORD, otp_token=wrong).status_code == 200
    assert not _logged_in(client)
    # django-otp also slows a device down after a wrong code (1 s, 2 s, 4 s ...); no test waits for that.
    device.refresh_from_db()
    device.throttle_reset()
    assert _login(client, "alice", PASSWORD, otp_token=_current_code(device)).status_code == 302
    assert _logged_in(client)


def test_a_session_that_skipped_the_second_factor_gets_no_admin(client, staff):
    TOTPDevice.objects.create(user=staff, name="phone", confirmed=True)
    client.force_login(staff)
    assert client.get("/admin/").status_code == 302


def test_wrong_codes_count_towards_the_lockout(client, staff):
    TOTPDevice.objects.create(user=staff, name="phone", confirmed=True)
    for _ in range(5):
        _login(client, "alice", PASSWORD, otp_token="12345x")
    assert _login(client, "alice", PASSWORD, otp_token="000000").status_code == 429


def test_superusers_need_a_device_where_required(client, staff, settings):
    settings.ADMIN_OTP_REQUIRED_FOR_SUPERUSERS = True
    response = _login(client, "alice", PASSWORD)
    assert response.status_code == 200 and b"admin_otp_enroll" in response.content
    assert not _logged_in(client)


def test_without_the_requirement_a_superuser_without_device_logs_in(client, staff, settings):
    settings.ADMIN_OTP_REQUIRED_FOR_SUPERUSERS = False
    assert _login(client, "alice", PASSWORD).status_code == 302
    assert _logged_in(client)
