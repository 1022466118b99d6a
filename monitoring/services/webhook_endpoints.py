"""Tenants' own webhook endpoints (``/v1/webhooks``): registration, removal, and the address checks against SSRF.

A tenant's endpoint is a URL our worker will POST to, so a hostile tenant
could aim it at the gateway's own network (cloud metadata at 169.254.169.254,
Redis on loopback, an internal admin page): server-side request forgery
(OWASP API7).  Two checks close that:

* at registration, without any DNS lookup (the request path must not wait on
  a resolver): https only, no credentials in the URL, and the host must not
  be a non-public IP literal, a legacy numeric form of one (``0x7f.1``,
  ``2130706433``), ``localhost`` or a single-label or ``.local``/``.internal`` name;
* at every delivery, in the worker (:func:`webhook_address_refusal`): every
  address the name resolves to must be public, so a name that later resolves
  to a private address (DNS rebinding) is dead-lettered instead of sent.

``WEBHOOK_ALLOW_PRIVATE_URLS`` lifts both for tests and local development
(and then allows plain http to a loopback receiver).  Operator endpoints,
configured in the admin, are trusted and may be internal.

Tenant endpoints subscribe only to ``quota.threshold``: alerts, incidents and
kill switches concern the operator, and ``webhook_event_emit`` never sends
them to a tenant's endpoint anyway.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction

from core.errors import ValidationFailed
from monitoring.errors import WebhookLimitReached, WebhookUrlRefused
from monitoring.models import WebhookEndpoint

TENANT_KINDS: tuple[str, ...] = (WebhookEndpoint.Kind.QUOTA_THRESHOLD,)
SECRET_MIN_LENGTH = 16
SECRET_MAX_LENGTH = 200
URL_MAX_LENGTH = 500
NAME_MAX_LENGTH = 100
_PRIVATE_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``host`` as an IP address when it is one, in canonical or any legacy numeric form ``inet_aton`` takes."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        # "0x7f.1", "017700000001", "2130706433": resolvers read these as IPv4 addresses.
        return ipaddress.ip_address(socket.inet_aton(host))
    except OSError:
        return None


def _address_allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global or bool(settings.WEBHOOK_ALLOW_PRIVATE_URLS)


def webhook_url_check(url: str) -> str:
    """The URL if a tenant may register it; ``WebhookUrlRefused`` (400) saying why otherwise."""
    if not isinstance(url, str) or not url or len(url) > URL_MAX_LENGTH:
        raise WebhookUrlRefused(f"The URL must be 1 to {URL_MAX_LENGTH} characters.")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url) or not url.isascii():
        raise WebhookUrlRefused("The URL must be ASCII without spaces or control characters (use punycode).")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError as exc:
        raise WebhookUrlRefused(f"The URL cannot be parsed: {exc}.") from None
    host = (parts.hostname or "").rstrip(".").lower()
    if parts.username is not None or parts.password is not None:
        raise WebhookUrlRefused("The URL must not carry credentials; sign with the webhook secret instead.")
    if not host:
        raise WebhookUrlRefused("The URL needs a host name.")
    address = _ip_literal(host)
    loopback = host == "localhost" or host.endswith(".localhost") or bool(address and address.is_loopback)
    allow_private = bool(settings.WEBHOOK_ALLOW_PRIVATE_URLS)
    if parts.scheme != "https" and not (parts.scheme == "http" and allow_private and loopback):
        raise WebhookUrlRefused("The URL must use https.")
    if address is not None:
        if not _address_allowed(address):
            raise WebhookUrlRefused(f"{host} is not a public address.")
    elif not allow_private and ("." not in host or host == "localhost" or host.endswith(_PRIVATE_SUFFIXES)):
        raise WebhookUrlRefused(f"{host} is not a public host name.")
    return url


def webhook_address_refusal(url: str) -> str:
    """Why the worker must not POST to ``url`` now (a non-public address it resolves to), or ``""``.

    Runs in the worker before each delivery to a tenant's endpoint: the name
    may resolve elsewhere than at registration.
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, ValueError, UnicodeError) as exc:
        return f"cannot resolve {host}: {exc}"[:500]
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not _address_allowed(address):
            return f"{host} resolves to {address}, not a public address"
    return ""


def webhook_endpoint_create(
    *, tenant_slug: str, name: str, url: str, kinds: list[str] | None, secret: str | None, actor: str
) -> tuple[WebhookEndpoint, str]:
    """Register a webhook of ``tenant_slug``; returns it and its signing secret (shown to the caller once).

    ``secret`` ``None``: one is generated (256 bits).  The request that calls
    this is audited by the API layer; ``actor`` names the key in the row.
    """
    name = (name or "").strip()
    if not name or len(name) > NAME_MAX_LENGTH:
        raise ValidationFailed(f"'name' must be 1 to {NAME_MAX_LENGTH} characters.")
    url = webhook_url_check(url)
    kinds = list(dict.fromkeys(kinds or TENANT_KINDS))
    refused = [kind for kind in kinds if kind not in TENANT_KINDS]
    if refused:
        raise ValidationFailed(f"A tenant's webhook may subscribe only to {', '.join(TENANT_KINDS)}.")
    if secret is None:
        secret = "whsec_" + secrets.token_urlsafe(32)
    elif not (SECRET_MIN_LENGTH <= len(secret) <= SECRET_MAX_LENGTH) or not secret.isprintable():
        raise ValidationFailed(f"'secret' must be {SECRET_MIN_LENGTH} to {SECRET_MAX_LENGTH} printable characters.")
    with transaction.atomic():
        # The limit bounds what one tenant makes the worker do; two registrations racing
        # may overshoot it by one, which is harmless (it is not a security boundary).
        count = WebhookEndpoint.objects.filter(tenant_slug=tenant_slug).count()
        if count >= settings.WEBHOOK_MAX_ENDPOINTS_PER_TENANT:
            raise WebhookLimitReached(
                f"This tenant already has {count} webhooks (the limit); delete one before adding another."
            )
        endpoint = WebhookEndpoint.objects.create(
            name=name, url=url, secret=secret, tenant_slug=tenant_slug, kinds=kinds, enabled=True
        )
    return endpoint, secret


def webhook_endpoint_delete(*, endpoint: WebhookEndpoint, actor: str) -> dict[str, Any]:
    """Remove a tenant's webhook and its delivery log; returns what the audit record keeps of it."""
    kept = {"webhook_id": endpoint.pk, "url": endpoint.url, "kinds": endpoint.kinds, "deleted_by": actor}
    endpoint.delete()
    return kept
