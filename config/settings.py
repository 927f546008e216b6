"""Baton's one settings module, driven by environment variables (see .env.example).

With nothing set Baton runs embedded: SQLite (WAL) under BATON_DATA_DIR, the django-q2 ORM broker,
a local-memory cache and a secret key generated once into the data dir. DATABASE_URL and REDIS_URL
switch to PostgreSQL and Redis. BATON_ENV=production fails closed.
"""

import base64
import contextlib
import os
import re
import secrets
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from config.env import database_from_url, env_bool, env_choice, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

BATON_ENV = env_choice("BATON_ENV", "development", {"development", "production", "test"})
PRODUCTION = BATON_ENV == "production"
TESTING = BATON_ENV == "test" or "pytest" in sys.modules

_data_dir = env_str("BATON_DATA_DIR")
DATA_DIR = Path(_data_dir).resolve() if _data_dir else BASE_DIR / "var"
DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
# Only the server's user may enter it (keys, database, uploads): a root worker's scripts run as another user.
if DATA_DIR.stat().st_uid == os.geteuid() and DATA_DIR.stat().st_mode & 0o077:
    DATA_DIR.chmod(0o700)


def _persisted_secret(filename: str, generate) -> str:
    """Return a secret kept in the data dir, generating it (mode 0600) on first use. Processes starting
    together (uvicorn's workers, a cluster) agree on one: the secret is written whole to a file of this
    process's own, then linked into place, which fails if another process got there first."""
    path = DATA_DIR / filename
    if path.exists():
        return path.read_text().strip()
    fd, draft = tempfile.mkstemp(dir=DATA_DIR, prefix=f".{filename}.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as file:
            file.write(generate() + "\n")
        with contextlib.suppress(FileExistsError):  # another process's secret is there: that one
            os.link(draft, path)
    finally:
        os.unlink(draft)
    return path.read_text().strip()


DEBUG = env_bool("BATON_DEBUG", False)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("BATON_DEBUG must be off when BATON_ENV=production.")

SECRET_KEY = env_str("BATON_SECRET_KEY")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured("BATON_SECRET_KEY is required when BATON_ENV=production.")
    SECRET_KEY = _persisted_secret("secret_key", lambda: secrets.token_urlsafe(50))
if PRODUCTION and len(SECRET_KEY) < 50:
    raise ImproperlyConfigured("BATON_SECRET_KEY must be at least 50 characters long.")

# API keys are stored as HMAC-SHA256(pepper, key). Peppers are independent of SECRET_KEY so rotating
# the secret key never breaks keys. Format "id:secret,id:secret": the first one signs new keys, the
# others still verify keys made before a pepper rotation.
_peppers = env_str("BATON_API_KEY_PEPPERS")
if not _peppers:
    if PRODUCTION:
        raise ImproperlyConfigured("BATON_API_KEY_PEPPERS is required when BATON_ENV=production.")
    _peppers = "p1:" + _persisted_secret("api_key_pepper", lambda: secrets.token_hex(32))
API_KEY_PEPPERS: dict[str, str] = {}
for _entry in _peppers.split(","):
    _pepper_id, _, _pepper = _entry.strip().partition(":")
    if not _pepper_id or len(_pepper) < 32 or len(_pepper_id) > 16:
        raise ImproperlyConfigured(
            "BATON_API_KEY_PEPPERS must be 'id:secret' pairs with ids up to 16 characters and "
            "secrets of at least 32 characters."
        )
    API_KEY_PEPPERS[_pepper_id] = _pepper
API_KEY_CURRENT_PEPPER = next(iter(API_KEY_PEPPERS))

# Encryption at rest (accounts/crypto.py: secrets, signing secrets, LLM provider keys). Empty: one key
# derived from SECRET_KEY. Else comma-separated Fernet keys, the first encrypts and all decrypt; the entry
# `secret_key` stands for the derived key (to move off it: "<new key>,secret_key", then rotate_encryption).
BATON_ENCRYPTION_KEYS = env_list("BATON_ENCRYPTION_KEYS")
for _entry in BATON_ENCRYPTION_KEYS:
    try:
        _valid_key = _entry == "secret_key" or len(base64.urlsafe_b64decode(_entry.encode())) == 32
    except ValueError:
        _valid_key = False
    if not _valid_key:
        raise ImproperlyConfigured(
            "BATON_ENCRYPTION_KEYS must be comma-separated Fernet keys (32 url-safe base64 bytes, e.g. from "
            "`manage.py rotate_encryption --generate-key`) or the word secret_key."
        )

# Audit checkpoints are signed with Ed25519 keys kept outside the database (audit/checkpoints.py): comma-
# separated base64 private keys (32 bytes each); the first signs, every one is published so older checkpoints
# still verify.
# New key: `manage.py audit_public_key --generate-key`.
_audit_keys = env_str("BATON_AUDIT_SIGNING_KEY")
if not _audit_keys:
    if PRODUCTION:
        raise ImproperlyConfigured("BATON_AUDIT_SIGNING_KEY is required when BATON_ENV=production.")
    _audit_keys = _persisted_secret(
        "audit_signing_key", lambda: base64.b64encode(secrets.token_bytes(32)).decode()
    )
BATON_AUDIT_SIGNING_KEYS: list[bytes] = []
for _entry in _audit_keys.split(","):
    try:
        _seed = base64.b64decode(_entry.strip(), validate=True)
    except ValueError:
        _seed = b""
    if len(_seed) != 32:
        raise ImproperlyConfigured(
            "BATON_AUDIT_SIGNING_KEY must be comma-separated base64 Ed25519 private keys of 32 bytes "
            "(e.g. from `manage.py audit_public_key --generate-key`)."
        )
    BATON_AUDIT_SIGNING_KEYS.append(_seed)
# A signed checkpoint of an organisation's chain head every this many events, or on the first append this many
# seconds after the last one a process made, and at every export; kept in the database and in one file per
# organisation under this directory.
BATON_AUDIT_CHECKPOINT_EVENTS = env_int("BATON_AUDIT_CHECKPOINT_EVENTS", 1000, minimum=1)
BATON_AUDIT_CHECKPOINT_SECONDS = env_int("BATON_AUDIT_CHECKPOINT_SECONDS", 600, minimum=1)
_checkpoint_dir = env_str("BATON_AUDIT_CHECKPOINT_DIR")
BATON_AUDIT_CHECKPOINT_DIR = (
    Path(_checkpoint_dir).resolve() if _checkpoint_dir else DATA_DIR / "audit-checkpoints"
)

ALLOWED_HOSTS = env_list("BATON_ALLOWED_HOSTS", [] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]"])
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("BATON_ALLOWED_HOSTS is required when BATON_ENV=production.")
if TESTING:
    ALLOWED_HOSTS = [*ALLOWED_HOSTS, "testserver"]
CSRF_TRUSTED_ORIGINS = env_list("BATON_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "config",
    "accounts",
    "audit",
    "workflows",
    "runs",
]

MIDDLEWARE = [
    "config.metrics.RequestMetricsMiddleware",
    "config.api.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "config.api.middleware.ApiErrorMiddleware",
    # Django's session, authentication and messages middleware, which hand a request that carries an API
    # key on untouched (config/api/browser.py).
    "config.api.browser.ApiSessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "config.api.browser.ApiAuthenticationMiddleware",
    "config.api.browser.ApiMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "config.dashboard.DashboardSecurityMiddleware",
    "config.api.middleware.RateLimitHeadersMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "runs.views.context.dashboard",
            ],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL")
# PostgreSQL: the engine's hot statements (config/sql.py) are pipelined and, on worker connections, bound
# on the server and prepared on a connection's second use of them. Off for a pooler that cannot keep
# prepared statements (PgBouncer in transaction mode before 1.21, or without max_prepared_statements).
BATON_PG_PREPARED_STATEMENTS = env_bool("BATON_PG_PREPARED_STATEMENTS", True)
if DATABASE_URL:
    DATABASES = {"default": database_from_url(DATABASE_URL)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "config.sqlite",
            "NAME": env_str("BATON_SQLITE_PATH", str(DATA_DIR / "baton.sqlite3")),
            "OPTIONS": {
                # WAL lets readers and one writer work at once; IMMEDIATE takes the write lock at
                # BEGIN so two writers queue on the busy timeout instead of failing mid-transaction.
                "init_command": (
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; "
                    "PRAGMA busy_timeout=30000;"
                ),
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
        }
    }
# Lets parallel test runs on one PostgreSQL server use separate test databases.
if env_str("BATON_TEST_DB_NAME"):
    DATABASES["default"]["TEST"] = {"NAME": env_str("BATON_TEST_DB_NAME")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")
# Under pytest-xdist each test process ("gw0", "gw1", ...) takes its own Redis database, counting down from
# the one REDIS_URL names, so their django-q2 queues, caches and rate-limit counters stay apart. The worker's
# name is set by pytest-xdist; it is not a setting.
_xdist_worker = os.getenv("PYTEST_XDIST_WORKER", "")
if REDIS_URL and re.fullmatch(r"gw\d+", _xdist_worker):
    _redis_base, _redis_db = re.fullmatch(r"(.*?)(?:/([0-9]+))?/?", REDIS_URL).groups()
    REDIS_URL = f"{_redis_base}/{(int(_redis_db or 0) - int(_xdist_worker[2:])) % 16}"
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

BATON_WORKERS = env_int("BATON_WORKERS", 2, minimum=1)
Q_CLUSTER = {
    "name": "baton",
    "workers": BATON_WORKERS,
    "timeout": env_int("BATON_TASK_TIMEOUT", 600, minimum=10),
    "retry": env_int("BATON_TASK_TIMEOUT", 600, minimum=10) + 60,
    "max_attempts": 1,
    "ack_failures": True,
    "save_limit": 1000,
    "catch_up": False,
    "label": "Tasks",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
    Q_CLUSTER["broker_class"] = "runs.engine.broker.RedisBroker"  # enqueues on a connection of its own
else:
    Q_CLUSTER["orm"] = "default"
    Q_CLUSTER["poll"] = 0.2
    Q_CLUSTER["broker_class"] = "runs.engine.broker.OrmBroker"  # its pusher keeps its connection
    Q_CLUSTER["bulk"] = BATON_WORKERS  # tasks the pusher locks per write (runs/engine/broker.py)

AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Argon2id first, as Django recommends (argon2-cffi); the others still verify older hashes, which are
# rehashed with Argon2 at the next sign-in (docs/authentication.md).
PRODUCTION_PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
PASSWORD_HASHERS = PRODUCTION_PASSWORD_HASHERS
if TESTING:  # fast hashing for the tests (tests/accounts/test_security_cases.py uses the real list)
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
# Password-reset and invitation links (one-time: they stop working once the password changes) expire after
# this many seconds.
PASSWORD_RESET_TIMEOUT = env_int("BATON_INVITATION_SECONDS", 3 * 86_400, minimum=600)

# Email (password resets, invitations): SMTP from BATON_EMAIL_URL (smtp://user:password@host:587, with
# ?ssl=true for implicit TLS; STARTTLS otherwise), else written to the console.
BATON_EMAIL_URL = env_str("BATON_EMAIL_URL")
DEFAULT_FROM_EMAIL = env_str("BATON_EMAIL_FROM", "baton@localhost")
if BATON_EMAIL_URL:
    from urllib.parse import parse_qs, unquote, urlsplit

    _mail = urlsplit(BATON_EMAIL_URL)
    if _mail.scheme != "smtp" or not _mail.hostname:
        raise ImproperlyConfigured("BATON_EMAIL_URL must look like smtp://user:password@host:587.")
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = _mail.hostname
    EMAIL_PORT = _mail.port or 587
    EMAIL_HOST_USER = unquote(_mail.username or "")
    EMAIL_HOST_PASSWORD = unquote(_mail.password or "")
    EMAIL_USE_SSL = parse_qs(_mail.query).get("ssl", ["false"])[0] == "true"
    EMAIL_USE_TLS = not EMAIL_USE_SSL
    EMAIL_TIMEOUT = 10
else:
    EMAIL_BACKEND = "config.mail.StderrEmailBackend"  # the console, on stderr (config/mail.py)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise warns about a missing directory before collectstatic
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
MEDIA_ROOT = DATA_DIR / "files"

# Request size limits: JSON bodies and uploads. Larger bodies answer 413 payload_too_large.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("BATON_MAX_REQUEST_BYTES", 1_048_576, minimum=1024)
BATON_MAX_UPLOAD_BYTES = env_int("BATON_MAX_UPLOAD_BYTES", 3_932_160, minimum=1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = BATON_MAX_UPLOAD_BYTES

BATON_MAX_CONCURRENT_RUNS = env_int("BATON_MAX_CONCURRENT_RUNS", 10, minimum=1)
# The run engine (docs/engine.md): how ready steps reach workers ("queue": django-q2 tasks; "inline": run
# in this process after commit; "manual": collected for a test driver), the reconciler's cadence, and limits.
BATON_ENGINE_DISPATCH = env_choice("BATON_ENGINE_DISPATCH", "queue", {"queue", "inline", "manual"})
BATON_RECONCILE_INTERVAL_MS = env_int("BATON_RECONCILE_INTERVAL_MS", 2000, minimum=100)
BATON_REDISPATCH_AFTER_SECONDS = env_int("BATON_REDISPATCH_AFTER_SECONDS", 30, minimum=1)
BATON_STEP_LEASE_SECONDS = env_int("BATON_STEP_LEASE_SECONDS", 300, minimum=5)
# How long one transaction may execute instant steps (transform, condition, end) under the run lock;
# 0: every step goes through the queue and a lease.
BATON_INSTANT_STEPS_MS = env_int("BATON_INSTANT_STEPS_MS", 100, minimum=0)
# Steps waiting on the network (http_request, webhook, agent_task) executed at once by one worker process
# (its I/O slots; 1: one step per process), and the database connections those slots share (0: 1 on
# SQLite, 4 on PostgreSQL). docs/engine.md "I/O slots".
BATON_WORKER_CONCURRENCY = env_int("BATON_WORKER_CONCURRENCY", 200, minimum=1)
BATON_WORKER_DB_CONNECTIONS = env_int("BATON_WORKER_DB_CONNECTIONS", 0, minimum=0)
BATON_MAX_RUN_DURATION_SECONDS = env_int("BATON_MAX_RUN_DURATION_SECONDS", 3600, minimum=1)
# The run event stream (GET /runs/{id}/stream, docs/streaming.md): keep-alive comments, how often the
# event table is polled, and the longest a stream stays open before the client must reconnect.
BATON_SSE_KEEPALIVE_SECONDS = env_int("BATON_SSE_KEEPALIVE_SECONDS", 15, minimum=1)
BATON_SSE_POLL_MS = env_int("BATON_SSE_POLL_MS", 250, minimum=10)
BATON_SSE_MAX_SECONDS = env_int("BATON_SSE_MAX_SECONDS", 3600, minimum=1)
# Retention (runs/retention.py): how often the periodic prune may run, across all processes.
BATON_RETENTION_INTERVAL_SECONDS = env_int("BATON_RETENTION_INTERVAL_SECONDS", 3600, minimum=1)
# ... and how long it rests after each batch, in percent of the time the batch took (0: no rest).
BATON_RETENTION_PAUSE_PERCENT = env_int("BATON_RETENTION_PAUSE_PERCENT", 100, minimum=0)
# Deployment-wide exceptions to the outbound SSRF guard (hosts, *.domains, IPs, CIDRs; docs/security.md),
# until each organisation's security policy carries its own http_allowlist.
BATON_HTTP_ALLOWLIST = env_list("BATON_HTTP_ALLOWLIST")
BATON_DEMO_ORG = env_bool("BATON_DEMO_ORG", True)
# Who a root worker's `script` steps run as (a user name or uid[:gid]; never root): docs/security.md.
BATON_SANDBOX_USER = env_str("BATON_SANDBOX_USER", "nobody")
# The web server (config/asgi_handler.py, docs/operations.md "The web server"): the web processes `serve` runs
# (0: by the database, config/management/commands/serve.py `web_workers_default`), the threads per process
# that run synchronous requests, how long each keeps its database connections (0: a new one per request),
# and for how long (ms) a process must have left its CPU mostly unused, the requests in it waiting, before
# another request joins them (0: every thread at once).
BATON_WEB_WORKERS = env_int("BATON_WEB_WORKERS", 0, minimum=0)
BATON_WEB_THREADS = env_int("BATON_WEB_THREADS", 8, minimum=1)
BATON_WEB_CONN_MAX_AGE = env_int("BATON_WEB_CONN_MAX_AGE", 60, minimum=0)
BATON_WEB_STALL_MS = env_int("BATON_WEB_STALL_MS", 20, minimum=0)
# GET /metrics (Prometheus, docs/operations.md "Metrics") answers only with `Authorization: Bearer <this>`;
# unset, the endpoint does not exist (404).
BATON_METRICS_TOKEN = env_str("BATON_METRICS_TOKEN", "")
# The plan of organisations created without one (create_org, serve's demo organisation): self_hosted has no
# quotas or rate limits (docs/quotas.md "Plans"); starter, growth and enterprise are for hosting others.
BATON_DEFAULT_PLAN = env_choice(
    "BATON_DEFAULT_PLAN", "self_hosted", {"self_hosted", "starter", "growth", "enterprise"}
)
# The self_hosted plan caps runs at once per organisation only when BATON_MAX_CONCURRENT_RUNS is set.
BATON_SELF_HOSTED_MAX_CONCURRENT_RUNS = (
    BATON_MAX_CONCURRENT_RUNS if env_str("BATON_MAX_CONCURRENT_RUNS") is not None else None
)
# Sign-in attempts: per client IP and per account, in a sliding window of this many seconds.
BATON_LOGIN_LIMIT_PER_IP = env_int("BATON_LOGIN_LIMIT_PER_IP", 20, minimum=1)
BATON_LOGIN_LIMIT_PER_ACCOUNT = env_int("BATON_LOGIN_LIMIT_PER_ACCOUNT", 10, minimum=1)
BATON_LOGIN_LIMIT_WINDOW = env_int("BATON_LOGIN_LIMIT_WINDOW", 300, minimum=1)
# Dashboard requests per signed-in session and minute (config/dashboard.py); the API's organisation limits
# do not count them.
BATON_DASHBOARD_REQUESTS_PER_MINUTE = env_int("BATON_DASHBOARD_REQUESTS_PER_MINUTE", 600, minimum=10)
BATON_IDEMPOTENCY_TTL = env_int("BATON_IDEMPOTENCY_TTL", 86_400, minimum=60)
# Number of reverse proxies in front of Baton whose X-Forwarded-For entries are trusted.
BATON_TRUSTED_PROXIES = env_int("BATON_TRUSTED_PROXIES", 0, minimum=0)
# The address Baton is reached at from outside (https://baton.example.com): inbound webhook URLs shown to
# admins and links in emails are built from it. Unset: the webhook URL is built from the request's host.
BATON_PUBLIC_URL = (env_str("BATON_PUBLIC_URL") or "").rstrip("/")
# Schedules (docs/schedules.md): the server's shortest interval between two fire times (plans may ask
# more: accounts/choices.py), how much a backfill may cover, and the longest the scheduler sleeps without a
# doorbell ring (a safety net).
BATON_SCHEDULE_MIN_INTERVAL_SECONDS = env_int("BATON_SCHEDULE_MIN_INTERVAL_SECONDS", 60, minimum=60)
BATON_SCHEDULE_BACKFILL_MAX_DAYS = env_int("BATON_SCHEDULE_BACKFILL_MAX_DAYS", 366, minimum=1)
BATON_SCHEDULE_BACKFILL_MAX_FIRES = env_int("BATON_SCHEDULE_BACKFILL_MAX_FIRES", 1000, minimum=1)
BATON_SCHEDULER_MAX_SLEEP_SECONDS = env_int("BATON_SCHEDULER_MAX_SLEEP_SECONDS", 60, minimum=1)
# Inbound webhooks (docs/schedules.md "Inbound webhooks"): largest body, requests per minute per workflow,
# and how old a signature's timestamp may be.
BATON_WEBHOOK_MAX_BODY_BYTES = env_int("BATON_WEBHOOK_MAX_BODY_BYTES", 1_048_576, minimum=1024)
BATON_WEBHOOK_RATE_PER_MINUTE = env_int("BATON_WEBHOOK_RATE_PER_MINUTE", 600, minimum=1)
BATON_WEBHOOK_TOLERANCE_SECONDS = env_int("BATON_WEBHOOK_TOLERANCE_SECONDS", 300, minimum=1)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiKeyAuthentication",
        "accounts.authentication.OrgJWTAuthentication",
        "accounts.authentication.OrgSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["config.api.permissions.RoleScopePermission"],
    "DEFAULT_THROTTLE_CLASSES": ["config.api.throttling.OrganizationRateThrottle"],
    "DEFAULT_PAGINATION_CLASS": "config.api.pagination.LimitOffsetPagination",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_RENDERER_CLASSES": ["config.api.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "config.api.negotiation.ContentNegotiation",
    # JSON only: a view that takes an upload adds MultiPartParser itself (the run trigger), so no other
    # endpoint reads a form, whose fields are all text and whose blank fields would vanish.
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "config.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "config.api.exceptions.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "PAGE_SIZE": 20,
    "DATETIME_FORMAT": "%Y-%m-%dT%H:%M:%S.%fZ",
    "COERCE_DECIMAL_TO_STRING": False,
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env_int("BATON_JWT_ACCESS_MINUTES", 15, minimum=1)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env_int("BATON_JWT_REFRESH_DAYS", 7, minimum=1)),
    "ALGORITHM": "HS256",
    "SIGNING_KEY": SECRET_KEY,
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "sub",
    "AUTH_HEADER_TYPES": ("Bearer",),
    "UPDATE_LAST_LOGIN": False,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Baton API",
    "DESCRIPTION": "REST API of Baton, the self-hostable platform for AI-agent workflows.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "WorkflowStatusEnum": "workflows.choices.WorkflowStatus",
        "RunStatusEnum": "runs.choices.RunStatus",
        "StepStatusEnum": "runs.choices.StepStatus",
        "LlmProviderKindEnum": "accounts.models.LlmProviderKind",
        "AgentKindEnum": "accounts.models.AgentKind",
        "ScheduleCatchupEnum": "workflows.choices.ScheduleCatchup",
        "ScheduleOverlapEnum": "workflows.choices.ScheduleOverlap",
    },
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums"],
    # Generation runs as an unsaved owner, so org-scoped get_queryset() works (config/api/schema.py).
    "GET_MOCK_REQUEST": "accounts.api.schema.build_mock_request",
    # Swagger UI and ReDoc from our own static files (drf-spectacular-sidecar), not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("BATON_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("BATON_HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    if env_bool("BATON_BEHIND_TLS_PROXY", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # /healthz and /readyz are probed over plain HTTP by load balancers.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "config.api.middleware.RequestIdLogFilter"},
        # The running step's secret values become *** in every log line (runs/engine/redaction.py).
        "redact_secrets": {"()": "runs.engine.redaction.SecretRedactingFilter"},
        # Inbound webhook tokens in paths become … (config/redaction.py).
        "redact_hook_tokens": {"()": "config.redaction.HookTokenFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["request_id", "redact_secrets", "redact_hook_tokens"],
        },
    },
    "root": {"handlers": ["console"], "level": env_str("BATON_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.request": {"level": "ERROR"},
        "django.server": {"level": "WARNING"},
    },
}
