"""Django core settings: apps, middleware, security, logging, DRF."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from csp.constants import NONE, SELF, UNSAFE_INLINE

from core.env import BASE_DIR, VAR_DIR, env_bool, env_int, env_list, env_str, is_production, secret_from_env_or_file

SECRET_KEY = secret_from_env_or_file("SECRET_KEY", "secret-key")
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    # django.contrib.admin with the two-factor login site (gateway.adminauth).
    "gateway.admin_apps.GatewayAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "core",
    "drf_spectacular_sidecar",
    "tenants",
    "policy",
    "audit",
    "inference",
    "monitoring",
    "jobs",
    "gateway",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "axes",
]

# The full stack, for the admin, the docs and everything else that people use.  The first entry hands
# API routes (gateway.urls_api) to API_MIDDLEWARE instead: an API key needs no session, CSRF token,
# user, second factor, message store or login throttle, yet the bench's bare view paid for all of
# them (issue 15: ~170 of its ~530 µs of in-process CPU; gateway.stacks).
MIDDLEWARE = [
    "gateway.stacks.StackSplitMiddleware",
    "gateway.middleware.RequestContextMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves collected, hashed, pre-compressed static files from the WSGI app itself (no DEBUG, no extra server).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "gateway.security_headers.ContentSecurityPolicyMiddleware",
    # Last, as django-axes asks: it turns a lockout raised during authentication into its 429 page.
    "axes.middleware.AxesMiddleware",
]
# The API routes' stack: the same request context (id, access log, problem+json net), transport and
# browser headers and host check as the full stack gives them, nothing that serves a browser session.
# ApiHeadersMiddleware is the full stack's Security, Common, XFrameOptions and CSP middleware in one layer.
API_MIDDLEWARE = [
    "gateway.middleware.RequestContextMiddleware",
    "gateway.security_headers.ApiHeadersMiddleware",
]

# Admin login guessing (gateway.adminauth): axes checks lockouts before the password is.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("ADMIN_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("ADMIN_LOGIN_COOLOFF_MINUTES", 30))
# Locked out by username or by address, each on its own (a list of single parameters).
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
# The peer address, as the gateway's own client_ip(): X-Forwarded-For is the client's to forge.
AXES_IPWARE_META_PRECEDENCE_ORDER = ["REMOTE_ADDR"]
AXES_VERBOSE = False
# A second factor for the admin; mandatory for superusers in production.
ADMIN_OTP_REQUIRED_FOR_SUPERUSERS = env_bool("ADMIN_OTP_REQUIRED_FOR_SUPERUSERS", is_production())
OTP_TOTP_ISSUER = env_str("OTP_TOTP_ISSUER", "MaaS Gateway")

ROOT_URLCONF = "gateway.urls"
# A rejected form gets a page in the admin's look (API clients a problem document).
CSRF_FAILURE_VIEW = "gateway.error_pages.csrf_failure"
WSGI_APPLICATION = "gateway.wsgi.application"
ASGI_APPLICATION = "gateway.asgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "gateway" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
# Admin dates as 2026-01-31 14:05:09 UTC: unambiguous, and always with their time zone.
FORMAT_MODULE_PATH = ["gateway.formats"]
# Large counts (sequence numbers, instances, limits) are read by people in the admin: 1,234,567.
# Numbers that are data, not text (hidden inputs, ids, URLs), go through |unlocalize.
USE_THOUSAND_SEPARATOR = True

STATIC_URL = "static/"
# A deployment may collect once into a directory its web server or several gateways share.
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
# `manage.py bootstrap` (make setup) runs collectstatic; WhiteNoise serves the hashed, compressed copies.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Bodies are bounded by plan limits in the pipeline; this is the hard ceiling.
DATA_UPLOAD_MAX_MEMORY_SIZE = 80 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 4 * 1024 * 1024

# Transport security: production defaults (``manage.py check --deploy`` passes clean), each
# overridable from the environment.  TLS ends at the proxy in front, which must set
# X-Forwarded-Proto (and strip a client's own); probes inside the network may use plain HTTP.
_PRODUCTION = is_production()
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("SECURE_PROXY_SSL", _PRODUCTION) else None
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", _PRODUCTION)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$", r"^v2/health/"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if _PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", _PRODUCTION)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", _PRODUCTION)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", _PRODUCTION)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", _PRODUCTION)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "core.errors.problem_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "gateway.openapi.GatewayAutoSchema",
    # OPTIONS would describe views (serializer fields, renderers) to anyone, unauthenticated: answered 405.
    "DEFAULT_METADATA_CLASS": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "MaaS Gateway API",
    "DESCRIPTION": "Governed, multi-tenant Model-as-a-Service gateway.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and ReDoc are served from the gateway's own static files (pinned by the sidecar package).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "APPEND_COMPONENTS": {
        "securitySchemes": {
            "ApiKeyAuth": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <api key>"},
            "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
    },
    "SECURITY": [{"ApiKeyAuth": []}, {"ApiKeyHeader": []}],
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "gateway.openapi.v2_paths_hook"],
}

# Content-Security-Policy (django-csp 4) on every response: the admin and the Swagger UI load
# scripts only from this origin (the docs' init script is served from /v1/docs/?script, no inline
# script anywhere); inline *styles* are allowed (the admin's and Swagger UI's style attributes
# cannot run code).  Until the Swagger UI assets are self-hosted (drf-spectacular-sidecar,
# SWAGGER_UI_DIST="SIDECAR"), their CDN origin is allowed for scripts, styles and images.
_DOCS_ASSETS = [] if SPECTACULAR_SETTINGS.get("SWAGGER_UI_DIST") == "SIDECAR" else ["https://cdn.jsdelivr.net"]
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, *_DOCS_ASSETS],
        "style-src": [SELF, UNSAFE_INLINE, *_DOCS_ASSETS],
        "img-src": [SELF, "data:", *_DOCS_ASSETS],
        "font-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "core.logging.JsonFormatter"}},
    "filters": {"request": {"()": "core.logging.RequestContextFilter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["request"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.request": {"level": "ERROR", "handlers": ["console"], "propagate": False},
        "django.server": {"level": "WARNING"},
        "celery": {"level": LOG_LEVEL},
    },
}
