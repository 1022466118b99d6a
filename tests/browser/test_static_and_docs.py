"""Static assets, the API reference and error pages, as a browser sees them with no network."""

from __future__ import annotations

import pytest

from tests.browser.conftest import admin_login, shot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def test_login_page_is_styled_by_the_collected_stylesheet(page, offsite):
    response = page.goto("/admin/login/")
    assert response is not None and response.status == 200
    stylesheets = page.eval_on_selector_all("link[rel=stylesheet]", "els => els.map(e => e.href)")
    # Hashed names prove the manifest storage served them (cacheable forever).
    assert any(".css" in href and "/static/admin/css/" in href for href in stylesheets), stylesheets
    # The admin's stylesheet sets the header background; unstyled HTML would be transparent.
    header_bg = page.eval_on_selector("#header", "el => getComputedStyle(el).backgroundColor")
    assert header_bg not in {"rgba(0, 0, 0, 0)", "transparent"}, header_bg
    login_width = page.eval_on_selector("#container", "el => el.getBoundingClientRect().width")
    assert login_width < 1366, "the login box is a centred panel once base.css and login.css apply"
    assert not offsite
    shot(page, "admin-login")


def test_docs_list_the_predict_operation_without_leaving_the_machine(page, offsite):
    page.goto("/v1/docs/")
    page.wait_for_selector("#operations-models-v1_models_predict_create, .opblock-summary-path", timeout=20_000)
    paths = page.eval_on_selector_all(".opblock-summary-path", "els => els.map(e => e.textContent.trim())")
    assert any(p.replace("\u200b", "") == "/v1/models/{name}/predict" for p in paths), paths
    assert offsite == [], offsite
    shot(page, "api-docs")
    # The schema opens in the browser instead of downloading.
    page.click("text=JSON")
    page.wait_for_load_state()
    assert '"openapi"' in page.content()


def test_admin_404_is_a_page_with_a_way_back(page, superuser):
    admin_login(page, "root", "pw-root-12345")
    response = page.goto("/admin/no/such/page/")
    assert response is not None and response.status == 404
    assert "text/html" in response.headers["content-type"]
    assert page.is_visible("text=Page not found")
    assert page.is_visible("a:has-text('Admin home')")
    shot(page, "error-404")
