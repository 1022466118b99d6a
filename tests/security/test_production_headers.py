"""Issue 13, item 5: production transport and browser headers.

``manage.py check --deploy`` must pass clean with ``DJANGO_ENV=production``
(HSTS, an HTTPS redirect behind the TLS proxy, secure cookies), and the admin
and the API docs carry a Content-Security-Policy that allows no inline or
foreign script -- while both still load.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.support import ROOT

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def _directives(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}


def test_check_deploy_passes_clean_in_production(tmp_path):
    key = tmp_path / "audit-signing-key.pem"
    key.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "gateway.settings",
        "DJANGO_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "API_KEY_PEPPER": secrets.token_urlsafe(32),
        "AUDIT_INPUT_DIGEST_KEY": secrets.token_urlsafe(32),
        "AUDIT_SIGNING_KEY_FILE": str(key),
        "ALLOWED_HOSTS": "maas.example",
        "MAAS_VAR_DIR": str(tmp_path / "var"),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_behind_the_proxy_http_is_redirected_and_https_gets_hsts(client, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31_536_000
    plain = client.get("/v1/models")
    assert plain.status_code == 301 and plain["Location"].startswith("https://")
    secure = client.get("/v1/models", HTTP_X_FORWARDED_PROTO="https")
    assert secure.status_code == 401 and "max-age=31536000" in secure["Strict-Transport-Security"]
    assert client.get("/healthz").status_code == 200  # probes from inside the network stay on plain HTTP


@pytest.mark.parametrize("path", ["/admin/login/", "/v1/docs/"])
def test_admin_and_docs_carry_a_policy_without_inline_or_foreign_script(client, path):
    response = client.get(path)
    assert response.status_code == 200
    directives = _directives(response)
    assert directives["script-src"][0] == "'self'"
    assert "'unsafe-inline'" not in directives["script-src"] and "'unsafe-eval'" not in directives["script-src"]
    assert directives["frame-ancestors"] == ["'none'"] and directives["object-src"] == ["'none'"]
    # Every script the page runs has a src the policy allows: no inline script would be blocked.
    html = response.content.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>\s*\S", html)
    for src in re.findall(r"<script[^>]*\bsrc=\"([^\"]+)\"", html):
        assert src.startswith("/") or any(src.startswith(origin) for origin in directives["script-src"][1:]), src


def test_the_docs_init_script_is_served_from_this_origin(client):
    page = client.get("/v1/docs/").content.decode()
    (init,) = [src for src in re.findall(r"<script[^>]*\bsrc=\"([^\"]+)\"", page) if "script" in src.split("?")[-1]]
    script = client.get(init.replace("&amp;", "&"))
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")
    assert b"SwaggerUIBundle" in script.content
