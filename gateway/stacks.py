"""Two middleware stacks in one process: a lean one for API routes, the full one for people.

Django runs every request through ``settings.MIDDLEWARE``.  The admin needs
all of it -- sessions, CSRF, authentication, the second factor, messages,
django-axes, static files -- while a request authenticated by its API key
uses none of it, yet paid for every layer on every call (issue 15: the bench
``bare`` view ran at 0.58 of a minimal Django app).  :class:`StackSplitMiddleware`
is the first entry of ``settings.MIDDLEWARE``: a request whose path resolves
in the root URLconf's ``api_urlconf`` is handed to a second chain built from
``settings.API_MIDDLEWARE`` (request context, security headers, the host
check), with its own view and exception hooks; every other request -- the
admin, the docs, ``/metrics`` and ``/readyz`` (which honour staff sessions),
unknown paths -- continues down the full stack exactly as before.

Why split inside the chain rather than in front of Django's handler: every
way in then takes the same route -- gunicorn's WSGI, an ASGI server, and
Django's and DRF's test clients, which each build their own handler from
``settings.MIDDLEWARE`` -- and ``settings.MIDDLEWARE`` still lists the whole
stack, so the admin's and ``check --deploy``'s system checks still see it.

Why the URLconf decides rather than a path prefix: only the routes listed in
``api_urlconf`` take the lean path, and each of them must be a CSRF-exempt
view that reads neither the session nor ``request.user`` (tests walk the
list); the match is reused, so the path is resolved once.  A root URLconf
without ``api_urlconf`` (a test's own) sends everything down the full stack.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib import import_module
from types import ModuleType
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, MiddlewareNotUsed
from django.core.handlers.base import BaseHandler
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest
from django.urls import Resolver404, ResolverMatch, URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RegexPattern, RoutePattern
from django.utils.module_loading import import_string

# Where the split middleware leaves the match for the lean stack's resolver (not ``resolver_match``:
# that is set only when the view is reached, as Django does, so a request refused by a middleware
# is still counted as "unmatched" in the metrics).
_MATCH_ATTRIBUTE = "_api_resolver_match"


@functools.lru_cache(maxsize=16)
def api_urlconf_of(root_urlconf: str | ModuleType) -> Any:
    """The ``api_urlconf`` a root URLconf declares (a URLconf: the routes that take the lean stack), or ``None``."""
    module = import_module(root_urlconf) if isinstance(root_urlconf, str) else root_urlconf
    return getattr(module, "api_urlconf", None)


@functools.lru_cache(maxsize=16)
def api_resolvers(root: URLResolver) -> tuple[dict[str, URLResolver], URLResolver]:
    """The API routes grouped by their first path segment, each group a resolver of its own; and all of them.

    Django tries a URLconf's routes one after the other (about 1 µs each, and
    a bench route came 24th).  A route whose first segment is literal can
    only match paths that start with that segment, so trying only the routes
    of the request's first segment, in their order, finds the same route.
    The index is empty -- every path tries every route -- when any route
    starts with a converter, a regular expression or an include.  Keyed by
    Django's cached resolver, so that ``clear_url_caches`` clears it too.
    """
    groups: dict[str, list[URLPattern]] = {}
    for entry in root.url_patterns:
        literal = isinstance(entry, URLPattern) and isinstance(entry.pattern, RoutePattern)
        first = str(entry.pattern).split("/", 1)[0] if literal else "<"
        if "<" in first:
            return {}, root
        groups.setdefault(first, []).append(entry)
    return {first: URLResolver(RegexPattern(r"^/"), entries) for first, entries in groups.items()}, root


def api_match(request: HttpRequest) -> ResolverMatch | None:
    """The API route ``request`` resolves to, or ``None`` when it belongs to the full stack."""
    api_urlconf = api_urlconf_of(settings.ROOT_URLCONF)
    if api_urlconf is None:
        return None
    index, every_route = api_resolvers(get_resolver(api_urlconf))
    path = request.path_info
    resolver = index.get(path[1:].split("/", 1)[0]) if index else every_route
    if resolver is None:
        return None
    try:
        return resolver.resolve(path)
    except Resolver404:
        return None


class LeanStack(BaseHandler):
    """A middleware chain of its own (``API_MIDDLEWARE``), entered with the URL already resolved.

    Django's ``BaseHandler`` keeps the view, template-response and exception
    hooks of the middleware it loaded on the handler itself; a second
    handler object is the one way to give the lean chain its own.
    """

    def __init__(self, middleware: list[str], *, is_async: bool) -> None:
        self.middleware = list(middleware)
        self.load_middleware(is_async=is_async)

    def load_middleware(self, is_async: bool = False) -> None:
        """``BaseHandler.load_middleware`` over ``self.middleware`` instead of ``settings.MIDDLEWARE``."""
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        handler: Callable[..., Any] = convert_exception_to_response(
            self._get_response_async if is_async else self._get_response
        )
        handler_is_async = is_async
        for middleware_path in reversed(self.middleware):
            middleware = import_string(middleware_path)
            can_sync = getattr(middleware, "sync_capable", True)
            can_async = getattr(middleware, "async_capable", False)
            if not can_sync and not can_async:
                raise RuntimeError(f"Middleware {middleware_path} must be sync- or async-capable.")
            middleware_is_async = False if (not handler_is_async and can_sync) else can_async
            adapted = self.adapt_method_mode(middleware_is_async, handler, handler_is_async)
            try:
                instance = middleware(adapted)
            except MiddlewareNotUsed:
                continue
            if instance is None:
                raise ImproperlyConfigured(f"Middleware factory {middleware_path} returned None.")
            if hasattr(instance, "process_view"):
                self._view_middleware.insert(0, self.adapt_method_mode(is_async, instance.process_view))
            if hasattr(instance, "process_template_response"):
                self._template_response_middleware.append(
                    self.adapt_method_mode(is_async, instance.process_template_response)
                )
            if hasattr(instance, "process_exception"):
                # Django runs exception hooks synchronously in both modes.
                self._exception_middleware.append(self.adapt_method_mode(False, instance.process_exception))
            handler = convert_exception_to_response(instance)
            handler_is_async = middleware_is_async
        self._middleware_chain = self.adapt_method_mode(is_async, handler, handler_is_async)

    def resolve_request(self, request: HttpRequest) -> ResolverMatch:
        """The match the split middleware found (the path is not resolved twice)."""
        match = getattr(request, _MATCH_ATTRIBUTE, None)
        if match is None:  # entered some other way: resolve against the API routes, as the split did
            match = api_match(request)
            if match is None:
                raise Resolver404({"path": request.path_info})
        request.resolver_match = match
        return match


class StackSplitMiddleware:
    """First in ``settings.MIDDLEWARE``: API routes take the lean stack, the rest the full one."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
        self.lean = LeanStack(settings.API_MIDDLEWARE, is_async=self.is_async)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        match = api_match(request)
        if match is None:
            return self.get_response(request)
        setattr(request, _MATCH_ATTRIBUTE, match)
        return self.lean._middleware_chain(request)

    async def __acall__(self, request: HttpRequest) -> Any:
        match = api_match(request)
        if match is None:
            return await self.get_response(request)
        setattr(request, _MATCH_ATTRIBUTE, match)
        return await self.lean._middleware_chain(request)
