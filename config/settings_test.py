"""Settings for the test suite: the real PostgreSQL and Redis, a Redis database of its own.

On a machine with neither, the suite runs on embedded ones instead (config/embedded.py, same
LEDGERFLOW_SERVICES rules as the run command), kept apart from the development data.

The tests' Redis is database 15 of the local server whatever REDIS_URL (or CELERY_BROKER_URL) the
caller's shell has, so an operator's environment never moves the tests onto a live stack's queues.
Only LEDGERFLOW_TEST_REDIS_URL, a test-only variable, moves them (to keep parallel checkouts apart).
"""

import atexit
import os

from config.embedded import ServicesError, resolve

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-ledgerflow-0123456789abcdefghijklmnop")
os.environ.setdefault("LOG_JSON", "false")

TEST_REDIS_DB = 15
_test_redis_url = os.environ.get("LEDGERFLOW_TEST_REDIS_URL", "")
_env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL")}
if _test_redis_url:
    _env["REDIS_URL"] = _test_redis_url
try:
    # Database 15, so a running development stack (database 0) never consumes the tests' messages.
    _services = resolve(_env, redis_db=TEST_REDIS_DB, data_subdir="test-services")
except ServicesError:
    # A configured server that does not answer: the tests that need it say so, as before.
    os.environ["REDIS_URL"] = os.environ["CELERY_BROKER_URL"] = (
        _test_redis_url or f"redis://127.0.0.1:6379/{TEST_REDIS_DB}"
    )
else:
    os.environ.update(_services.environ())
    atexit.register(_services.stop, quiet=True)

from config.settings import *  # noqa: E402,F403

EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405

# Throttles stay on, at rates the suite never reaches by accident; tests/core/test_throttling.py
# lowers them to show they work. Counts in this process's memory, never in a shared Redis.
API_THROTTLE_RATES = {"anon": "100000/minute", "user": "100000/minute", "webhook": "100000/minute"}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
