"""Errors by audience: API clients get problem+json, people get admin-styled pages with a way back."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.support import assert_problem

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

BROWSER = {"HTTP_ACCEPT": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@pytest.fixture
def staff(client):
    client.force_login(get_user_model().objects.create_user("sam", "s@example.com", "pw-sam-12345", is_staff=True))
    return client


def test_api_paths_stay_problem_json_even_for_a_browser(client):
    assert_problem(client.get("/v1/models/nope/nothing", **BROWSER), 404, "not_found")
    assert_problem(client.get("/no/such/thing"), 404, "not_found")
    assert_problem(client.get("/no/such/thing", HTTP_ACCEPT="application/json"), 404, "not_found")


def test_browser_404_outside_the_api_is_a_page(client):
    response = client.get("/no/such/thing", **BROWSER)
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert "Page not found" in html and response["X-Request-ID"] in html and 'href="/admin/"' in html


def test_admin_404_and_403_are_admin_pages_with_a_way_back(staff):
    missing = staff.get("/admin/no/such/page/")
    assert missing.status_code == 404 and missing["Content-Type"].startswith("text/html")
    assert b"Admin home" in missing.content and b"/static/admin/css/base.css" in missing.content
    forbidden = staff.get("/admin/tenants/tenant/", HTTP_REFERER="http://testserver/admin/")
    assert forbidden.status_code == 403 and forbidden["Content-Type"].startswith("text/html")
    assert b"Access denied" in forbidden.content and b'href="http://testserver/admin/">Go back' in forbidden.content


def test_admin_500_is_a_page_without_the_traceback(admin_client, monkeypatch):
    import policy.selectors

    def boom():
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(policy.selectors, "review_pending_counts", boom)  # rendered on the admin index
    admin_client.raise_request_exception = False
    response = admin_client.get("/admin/")
    assert response.status_code == 500 and response["Content-Type"].startswith("text/html")
    assert b"secret internal detail" not in response.content and b"Something went wrong" in response.content


def test_csrf_failure_in_the_admin_is_a_page():
    client = Client(enforce_csrf_checks=True)
    response = client.post("/admin/login/", {"username": "x", "password": "y"}, **BROWSER)
    assert response.status_code == 403 and response["Content-Type"].startswith("text/html")
    assert b"security token" in response.content


def test_non_staff_user_with_the_right_password_is_told_it_lacks_admin_access(client):
    get_user_model().objects.create_user("nina", "n@example.com", "pw-nina-12345")
    response = client.post("/admin/login/", {"username": "nina", "password": "pw-nina-12345"})
    html = response.content.decode()
    assert response.status_code == 200 and "has no access to the admin" in html
    wrong = client.post("/admin/login/", {"username": "nina", "password": "not-her-password"})
    assert "has no access" not in wrong.content.decode()  # a wrong password reveals nothing


def test_view_site_leads_to_the_api_docs(staff):
    assert b'href="/v1/docs/"' in staff.get("/admin/").content
