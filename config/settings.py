"""Ledgerflow settings, read from the environment (see README "Settings")."""

from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from config.dotenv import read_dotenv

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
read_dotenv()

# The development key is public; a process with DEBUG off refuses to start with it.
DEV_SECRET_KEY = "django-insecure-ledgerflow-development-key-do-not-use-in-production"  # noqa: S105

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default=DEV_SECRET_KEY)
if not DEBUG and SECRET_KEY == DEV_SECRET_KEY:
    raise ImproperlyConfigured(
        "SECRET_KEY is the public development key while DEBUG is off: set SECRET_KEY in the environment."
    )
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "axes",
    "core",
    "tenancy",
    "audit",
    "billing",
    "invoicing",
    "journeys",
    "reconciliation",
    "writeoffs",
    "consolidation",
    "operations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "core.middleware.RejectNulBytesMiddleware",
    "core.middleware.RequestLogContextMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lockout answer.
    "axes.middleware.AxesMiddleware",
]

# --- Logins: failed admin logins are limited (django-axes) ------------------------------------------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# After AXES_FAILURE_LIMIT failed logins for one username from one IP, that pair is locked out for
# AXES_COOLOFF_MINUTES (other users, and the same user from elsewhere, still log in).
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_ENABLED = env.bool("AXES_ENABLED", default=True)

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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
    "default": env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/ledgerflow"),
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# psycopg prepares a statement once it has run this many times on a connection, but only for
# cursors that bind parameters on the server: never the ORM's, only the journey kernel's hot-path
# statements (journeys/runrow.py). Turn off behind a transaction-pooling pgbouncer older than 1.21.
if env.bool("DATABASE_PREPARED_STATEMENTS", default=True):
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 5
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# Inside, every instant is an aware UTC datetime; the business zone is applied at the edges
# (billing periods, "today" for due dates, beat schedules).
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
BUSINESS_TIME_ZONE = env.str("BUSINESS_TIME_ZONE", default="UTC")

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="billing@ledgerflow.localhost")

# --- Production safety: on unless DEBUG is on -------------------------------------------------
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 3600)
X_FRAME_OPTIONS = "DENY"

# --- REST API ----------------------------------------------------------------------------------
API_BROWSABLE = env.bool("API_BROWSABLE", default=DEBUG)
_renderers = ["core.api.renderers.CamelCaseJSONRenderer"]
if API_BROWSABLE:
    _renderers.append("djangorestframework_camel_case.render.CamelCaseBrowsableAPIRenderer")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["tenancy.permissions.HasTenantPermission"],
    "DEFAULT_RENDERER_CLASSES": _renderers,
    "DEFAULT_PARSER_CLASSES": [
        "core.api.parsers.CamelCaseDecimalJSONParser",
        "djangorestframework_camel_case.parser.CamelCaseFormParser",
        "djangorestframework_camel_case.parser.CamelCaseMultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "core.api.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "core.api.schema.ProblemAutoSchema",
    "EXCEPTION_HANDLER": "core.api.problems.problem_exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["core.api.throttles.AnonThrottle", "core.api.throttles.UserThrottle"],
    # Amounts leave the API as strings: a JSON number would be read as a float by most clients.
    "COERCE_DECIMAL_TO_STRING": True,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # Free-form details are the client's own keys: passed through as sent.
    # HAL links keep their leading underscore. A digit joins the word before it (addressLine1 is
    # address_line1), the way the renderer camelizes it: what the API returns, it accepts.
    "JSON_UNDERSCOREIZE": {
        "ignore_fields": ("details", "amount_tolerances"),
        "ignore_keys": ("_links",),
        "no_underscore_before_number": True,
    },
}

# Requests per caller ("<n>/second|minute|hour|day", or "off"); see core/api/throttles.py.
API_THROTTLE_RATES = {
    "anon": env.str("API_THROTTLE_ANON", default="60/minute"),
    "user": env.str("API_THROTTLE_USER", default="1200/minute"),
    "webhook": env.str("API_THROTTLE_WEBHOOK", default="1200/minute"),
}
# Throttle counts (and anything else cached) are shared by every web process through Redis.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env.str("CACHE_URL", default=REDIS_URL),
    }
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Ledgerflow API",
    "DESCRIPTION": "Accounts receivable: customers, subscriptions, charges, invoices, payments, audit events.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "ENUM_NAME_OVERRIDES": {
        "InvoiceStatusEnum": "invoicing.lifecycle.InvoiceStatus",
        "PaymentStatusEnum": "billing.lifecycle.PaymentStatus",
        "SubscriptionStatusEnum": "billing.lifecycle.SubscriptionStatus",
        "CancellationSourceEnum": "billing.lifecycle.CancellationSource",
        "BillingPeriodTypeEnum": "consolidation.lifecycle.PeriodType",
        "RoleEnum": "tenancy.roles.Role",
    },
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "COMPONENT_SPLIT_REQUEST": True,
    "CAMELIZE_NAMES": False,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "drf_spectacular.contrib.djangorestframework_camel_case.camelize_serializer_fields",
        "core.api.schema.camelize_path_parameters",
    ],
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}

# --- Celery ------------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
# A task is acknowledged only when it finished, and put back if its worker died: tasks are
# idempotent, so running one twice is safe, losing one is not.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
# Outside HTTP and email wait on the network: they get their own queue so slow I/O never starves
# the bookkeeping tasks.
CELERY_TASK_ROUTES = {
    "invoicing.send_invoice_email": {"queue": "io"},
    "consolidation.send_consolidated_invoices": {"queue": "io"},
    "writeoffs.apply_chunk": {"queue": "io"},
    "writeoffs.notify_failures": {"queue": "io"},
}
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
# django-celery-beat's database scheduler; it syncs every app's schedules.py when it starts.
CELERY_BEAT_SCHEDULER = "operations.beat:Scheduler"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_REDIRECT_STDOUTS_LEVEL = "INFO"
# How long a leased (transactional=False) journey step holds its run without renewing the lease (a
# working step renews it every third of this) before recovery may hand it on, and how long a
# dispatched step may go unclaimed before it is presumed lost in transit. Fault tests shorten both.
JOURNEY_STEP_LEASE_SECONDS = env.int("JOURNEY_STEP_LEASE_SECONDS", default=90)
JOURNEY_STALL_AFTER_SECONDS = env.int("JOURNEY_STALL_AFTER_SECONDS", default=60)
# A segment (consecutive journey steps on one queue, run in one task) hands the run back to the
# queue after this long or this many steps (journeys.engine.SEGMENT_SECONDS, SEGMENT_STEPS).
JOURNEY_SEGMENT_SECONDS = env.float("JOURNEY_SEGMENT_SECONDS", default=1.0)
JOURNEY_SEGMENT_STEPS = env.int("JOURNEY_SEGMENT_STEPS", default=50)
# How often beat ticks each journey schedule; an occurrence starts at most this late.
JOURNEY_SCHEDULE_TICK_SECONDS = env.int("JOURNEY_SCHEDULE_TICK_SECONDS", default=10)
# Who may decide an approval step: the roles table (the kernel itself knows no roles and fails closed).
JOURNEYS_DECIDER_CHECK = "tenancy.roles.may"
# Celery's Django fixup closes the database connection after every task unless told otherwise:
# that is a new PostgreSQL session per task.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)
# Hour (business time zone) of the daily consolidation run; the beat entry is synced on start.
CONSOLIDATION_RUN_HOUR = env.int("CONSOLIDATION_RUN_HOUR", default=1)

# --- Logging -----------------------------------------------------------------------------------
from core.logging import logging_config  # noqa: E402  (plain function, imports no models)

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_JSON = env.bool("LOG_JSON", default=not DEBUG)
LOGGING = logging_config(json=LOG_JSON, level=LOG_LEVEL)

# --- Ledgerflow --------------------------------------------------------------------------------
LEDGERFLOW_ADMIN_URL = "admin/"

# --- Daily write-off ---------------------------------------------------------------------------
# Hour (business time zone) at which beat starts the day's write-off runs.
WRITEOFF_RUN_HOUR = env.int("WRITEOFF_RUN_HOUR", default=5)
# Candidates per chunk task on the local ledger: one set-based transaction each; 200 keeps a chunk
# well under a second (short locks) while the ~1.5 ms task overhead stays under 1 % per invoice.
WRITEOFF_CHUNK_SIZE = env.int("WRITEOFF_CHUNK_SIZE", default=200)
# Candidates per chunk task against a remote provider: each invoice waits on ~5 HTTP calls, so
# small chunks let one run use every thread of the io queue.
WRITEOFF_REMOTE_CHUNK_SIZE = env.int("WRITEOFF_REMOTE_CHUNK_SIZE", default=4)
