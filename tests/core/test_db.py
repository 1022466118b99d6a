"""The PostgreSQL backend: health checks only for idle connections, and recovery from a dropped one."""

from __future__ import annotations

import psycopg
import pytest
from django.conf import settings
from django.db import close_old_connections, connections

from audit.errors import AuditUnavailable
from audit.models import AuditEvent
from audit.services import audit_request_record

pytestmark = pytest.mark.skipif(not settings.DATABASE_IS_POSTGRES, reason="the backend wraps PostgreSQL only")


def _new_request() -> None:
    """What Django does at every request's start: health checks become due again."""
    close_old_connections()


@pytest.mark.django_db(transaction=True)
def test_a_busy_connection_skips_the_select_1_and_an_idle_one_is_checked(monkeypatch):
    connection = connections["default"]
    checks = []
    real = type(connection).is_usable
    monkeypatch.setattr(type(connection), "is_usable", lambda self: checks.append(1) or real(self))
    connection.ensure_connection()
    _new_request()
    AuditEvent.objects.exists()
    assert checks == []  # used a moment ago: no round trip
    connection._last_used -= connection.health_check_idle_seconds + 1
    _new_request()
    AuditEvent.objects.exists()
    assert checks == [1]  # idle longer than the delay: checked once
    AuditEvent.objects.exists()
    assert checks == [1]  # and only once per request


@pytest.mark.django_db(transaction=True)
def test_a_connection_killed_under_load_costs_one_503_then_recovers():
    connection = connections["default"]
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    with psycopg.connect(_dsn(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    _new_request()  # the connection was used a moment ago: no health check catches it
    with pytest.raises(AuditUnavailable):
        audit_request_record(action="predict", http_status=200)
    _new_request()  # Django drops a connection whose query failed at the request's end
    seq = audit_request_record(action="predict", http_status=200)
    assert AuditEvent.objects.get(seq=seq).http_status == 200


def _dsn() -> str:
    params = connections["default"].get_connection_params()
    return psycopg.conninfo.make_conninfo(
        **{k: v for k, v in params.items() if k in {"dbname", "user", "password", "host", "port"}}
    )
