"""Hive Portal settings: everything that differs between machines comes from the
environment (see README "Configuration"). Malformed values stop start-up with a
message naming the variable (hiveportal.env)."""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from hiveportal.env import (
    database_config,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_rate,
    env_str,
    env_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

# --- Modes ---------------------------------------------------------------
DEBUG = env_bool("DJANGO_DEBUG", False)
# Demo mode mounts the simulator and lets seed_demo create demo users. Without
# it we are under "production settings", whatever DJANGO_DEBUG says.
HIVE_SIMULATOR = env_bool("HIVE_SIMULATOR", False)
DEMO_MODE = HIVE_SIMULATOR

_DEV_SECRET = "insecure-demo-only-secret-key-do-not-use-in-production-0123456789"
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not (DEBUG or DEMO_MODE):
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set: production settings need a secret key "
            "(set HIVE_SIMULATOR=1 or DJANGO_DEBUG=1 for a local demo)."
        )
    SECRET_KEY = _DEV_SECRET
# Previous keys, while a rotation settles: sessions and the callback URLs already
# given to Hive for tasks still running stay valid.
SECRET_KEY_FALLBACKS = env_list("DJANGO_SECRET_KEY_FALLBACKS", [])

ALLOWED_HOSTS = env_list(
    "DJANGO_ALLOWED_HOSTS",
    ["localhost", "127.0.0.1", "[::1]"] if (DEBUG or DEMO_MODE) else [],
)
if not ALLOWED_HOSTS and not DEBUG:
    # Django would answer every page 400 while /healthz says 200: the load balancer
    # would keep sending traffic to a portal that serves nothing.
    raise ImproperlyConfigured(
        "DJANGO_ALLOWED_HOSTS is not set: production settings need the host names the "
        "portal is served under (comma-separated, e.g. portal.example.com)."
    )

PORTAL_BASE_URL = env_url("PORTAL_BASE_URL", "http://127.0.0.1:8000")
HIVE_API_URL = env_url(
    "HIVE_API_URL",
    f"{PORTAL_BASE_URL}/simulator" if HIVE_SIMULATOR else "https://api.thehive.ai",
)
# Seconds. Sync video can take minutes before Hive answers.
HIVE_CONNECT_TIMEOUT = env_float("HIVE_CONNECT_TIMEOUT", 5.0, minimum=0.1)
HIVE_READ_TIMEOUT = env_float("HIVE_READ_TIMEOUT", 300.0, minimum=0.1)
# Transient failures of one submission before it is failed for good.
HIVE_MAX_ATTEMPTS = env_int("HIVE_MAX_ATTEMPTS", 12, minimum=1)
# While Hive is down for everyone (the project's circuit is open) retries are not
# counted against an item; it is failed only once it has waited this long.
HIVE_GIVE_UP_HOURS = env_int("HIVE_GIVE_UP_HOURS", 24, minimum=1)
# A claimed item belongs to its worker this long, renewed while the call runs: a
# killed worker's in-flight slots are free again after at most this.
HIVE_LEASE_SECONDS = env_int("HIVE_LEASE_SECONDS", 30, minimum=4)

MAX_UPLOAD_MB = env_int("MAX_UPLOAD_MB", 1024, minimum=1)
API_THROTTLE_RATE = env_rate("API_THROTTLE_RATE", "6000/min")
ALLOW_PRIVATE_URLS = env_bool("ALLOW_PRIVATE_URLS", False)

# --- Django --------------------------------------------------------------
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
    # Before django_q: its `qcluster` command is replaced by ours.
    "moderation",
    "django_q",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Before anything reads a body: one without Content-Length would read as empty.
    "hiveportal.middleware.RequireContentLengthMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "hiveportal.urls"
WSGI_APPLICATION = "hiveportal.wsgi.application"

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

DATABASES = {"default": database_config("DATABASE_URL", str(VAR_DIR / "db.sqlite3"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_url("REDIS_URL", "", schemes=("redis", "rediss", "unix"))
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "hiveportal",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/portal/login/"
LOGIN_REDIRECT_URL = "/portal/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# Uploads above 2.5 MB stream to a temporary file, never into memory. JSON and
# form bodies (text, URLs, metadata) are small by nature: 2 MB is generous.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FIELDS = 200

# --- Security ------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    # Production serves HTTPS only; a local demo with DJANGO_DEBUG=0 runs on plain HTTP.
    _https = env_bool("DJANGO_SECURE_SSL", not DEMO_MODE)
    SESSION_COOKIE_SECURE = _https
    CSRF_COOKIE_SECURE = _https
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SSL_REDIRECT", _https)
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000 if _https else 0, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = _https
    SECURE_HSTS_PRELOAD = _https
    # Behind a TLS-terminating proxy that sets X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # Health checks and the callback from Hive arrive on plain paths.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

# --- REST framework ------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["moderation.api.authentication.PartnerKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["moderation.api.permissions.IsPartner"],
    "DEFAULT_THROTTLE_CLASSES": ["moderation.api.throttling.PartnerRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"partner": API_THROTTLE_RATE},
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "moderation.api.parsers.SafeJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "EXCEPTION_HANDLER": "moderation.api.exceptions.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Hive Portal partner API",
    "DESCRIPTION": "Submit content for moderation by Hive and read the verdicts.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # The Error body, and the 401/429 every authenticated operation can answer.
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "moderation.api.schema.add_common_errors"],
}

# --- Background queue (django-q2) ---------------------------------------
# Tasks are idempotent (they claim their row by conditional UPDATE), so
# at-least-once redelivery is safe. `timeout` must stay below `retry`, or a
# long task is handed to a second worker while the first still runs.
Q_TIMEOUT = env_int("Q_TIMEOUT", int(HIVE_READ_TIMEOUT) + 120, minimum=10)
Q_CLUSTER = {
    "name": "hiveportal",
    "workers": env_int("Q_WORKERS", 4, minimum=1),
    "timeout": Q_TIMEOUT,
    "retry": Q_TIMEOUT + 60,
    "max_attempts": 3,
    "ack_failures": True,
    # Our own tables record every outcome; storing each task's success too
    # would double the writes of the busiest path.
    "save_limit": -1,
    "catch_up": False,
    "poll": 0.1,
    "guard_cycle": 0.5,
    "recycle": 500,
    "label": "Background tasks",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
    # One Redis client per process, not one per enqueue (moderation/ops/broker.py).
    Q_CLUSTER["broker_class"] = "moderation.ops.broker.SharedRedis"
else:
    Q_CLUSTER["orm"] = "default"
# Partner webhooks on a django-q2 cluster of their own (Procfile `webhooks`), so
# deliveries take no worker or CPU from submission processing (docs/BENCHMARKS.md).
WEBHOOK_Q_CLUSTER = env_str("WEBHOOK_Q_CLUSTER", "")
if WEBHOOK_Q_CLUSTER:
    Q_CLUSTER["ALT_CLUSTERS"] = {WEBHOOK_Q_CLUSTER: {"workers": env_int("Q_WEBHOOK_WORKERS", 2, minimum=1)}}
# Added to each worker process's niceness (0: none): the web processes, which
# answer while someone waits, get the CPU first on a shared machine (moderation/ops/worker.py).
Q_WORKER_NICENESS = env_int("Q_WORKER_NICENESS", 5, minimum=0)
# django-q2 serves the cluster named by Q_CLUSTER_NAME (the Procfile's `webhooks`):
# one that no setting defines crashed at start, for ever, under a supervisor.
_SERVED_CLUSTER = env_str("Q_CLUSTER_NAME", "")
if _SERVED_CLUSTER and _SERVED_CLUSTER not in (Q_CLUSTER["name"], WEBHOOK_Q_CLUSTER):
    raise ImproperlyConfigured(
        f"Q_CLUSTER_NAME={_SERVED_CLUSTER} names no cluster: set WEBHOOK_Q_CLUSTER={_SERVED_CLUSTER} "
        "for every process (the web and workers send webhook tasks to it), or unset Q_CLUSTER_NAME."
    )
Q_SYNC = env_bool("Q_SYNC", False)
if Q_SYNC:
    Q_CLUSTER["sync"] = True

# --- Pipeline tuning -----------------------------------------------------
# Calls to Hive in flight per project unless the project sets its own.
HIVE_DEFAULT_INFLIGHT_LIMIT = env_int("HIVE_INFLIGHT_LIMIT", 10, minimum=1)
# Minutes a moderator's claim on a review item lasts before others may take it.
REVIEW_LEASE_MINUTES = env_int("REVIEW_LEASE_MINUTES", 10, minimum=1)

# --- Logging -------------------------------------------------------------
# JSON lines by default (LOG_FORMAT=text for a terminal). Every line about a
# submission carries submission_id, project and hive_task_id; secrets are
# scrubbed from every line (hiveportal/logging.py).
LOG_FORMAT = env_str("LOG_FORMAT", "json")
if LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r} is not a log format: use json or text.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "hiveportal.logging.ContextFilter"}},
    "formatters": {
        "json": {"()": "hiveportal.logging.JsonFormatter"},
        "text": {"()": "hiveportal.logging.TextFormatter",
                 "format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django_q": {"level": env_str("Q_LOG_LEVEL", "WARNING")}},
}

# --- Operations: media store, health, metrics (README "Production") ---------
# Media on local disk (MEDIA_ROOT) unless AWS_STORAGE_BUCKET_NAME names a bucket
# in an S3-compatible store. The bucket stays private: the portal streams media
# through its permission-checked view, and any URL the storage hands out is
# presigned for AWS_QUERYSTRING_EXPIRE seconds. Without AWS_ACCESS_KEY_ID /
# AWS_SECRET_ACCESS_KEY, boto3's usual chain (instance role, ~/.aws) applies.
AWS_STORAGE_BUCKET_NAME = env_str("AWS_STORAGE_BUCKET_NAME")
if AWS_STORAGE_BUCKET_NAME:
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config as BotoConfig

    _addressing = env_str("AWS_S3_ADDRESSING_STYLE", "auto")
    if _addressing not in ("auto", "path", "virtual"):
        raise ImproperlyConfigured(
            f"AWS_S3_ADDRESSING_STYLE={_addressing!r} is not an addressing style: use auto, path or virtual.")
    STORAGES["default"] = {
        "BACKEND": "moderation.ops.storage.PrivateS3Storage",
        "OPTIONS": {
            "bucket_name": AWS_STORAGE_BUCKET_NAME,
            "endpoint_url": env_url("AWS_S3_ENDPOINT_URL") or None,
            "region_name": env_str("AWS_S3_REGION_NAME") or None,
            "access_key": env_str("AWS_ACCESS_KEY_ID") or None,
            "secret_key": env_str("AWS_SECRET_ACCESS_KEY") or None,
            "location": env_str("AWS_LOCATION"),
            "default_acl": None,  # objects inherit the private bucket's owner-only access
            "querystring_auth": True,
            "querystring_expire": env_int("AWS_QUERYSTRING_EXPIRE", 300, minimum=1),
            # Names are our own UUIDs: no need for an exists() request per upload.
            "file_overwrite": True,
            "client_config": BotoConfig(
                signature_version="s3v4", s3={"addressing_style": _addressing},
                connect_timeout=5, read_timeout=60, retries={"max_attempts": 5, "mode": "standard"}),
            # Multipart upload: 8 MB parts, 4 at a time: at most ~32 MB in memory per upload.
            "transfer_config": TransferConfig(max_concurrency=4),
        },
    }

# A PostgreSQL that does not answer must fail a probe or a request in seconds.
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)

# /metrics answers only with `Authorization: Bearer <METRICS_TOKEN>`; unset, it
# is off (except in demo mode, from loopback). See moderation/ops/endpoints.py.
METRICS_TOKEN = env_str("METRICS_TOKEN")
INSTALLED_APPS += ["django_prometheus"]
# Request rates and latencies (django-prometheus) wrap everything; /healthz,
# /readyz and /metrics are answered before host validation and HTTPS redirects.
MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "moderation.ops.endpoints.OpsEndpointsMiddleware",
    *MIDDLEWARE,
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]
PROMETHEUS_EXPORT_MIGRATIONS = False

# A stored Hive callback still unprocessed after this long lost its task with a
# dead worker (Redis hands a task out once): the sweep queues it again.
CALLBACK_STALL_SECONDS = env_int("CALLBACK_STALL_SECONDS", 300, minimum=30)
# Partner webhook history (events, messages, attempts) older than this is deleted
# hourly once nothing is left to deliver (services/retention.py).
WEBHOOK_RETENTION_DAYS = env_int("WEBHOOK_RETENTION_DAYS", 30, minimum=1)
# Hive callback receipts (the callback log) older than this are deleted hourly,
# once processed or refused (services/retention.py).
CALLBACK_RETENTION_DAYS = env_int("CALLBACK_RETENTION_DAYS", 30, minimum=1)
# A stored Idempotency-Key answer is replayed for this long (Stripe keeps 24 h), then
# deleted hourly; the submission keeps its key for good, so a repeat after that
# still gets the same submission, or a 409 if the request differs.
IDEMPOTENCY_RETENTION_HOURS = env_int("IDEMPOTENCY_RETENTION_HOURS", 24, minimum=1)
# Each event is fanned out to every endpoint of the partner inside the pipeline's
# transaction: a bound on how many there are is a bound on that transaction.
WEBHOOK_ENDPOINTS_PER_PARTNER = env_int("WEBHOOK_ENDPOINTS_PER_PARTNER", 20, minimum=1)
