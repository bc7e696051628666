"""Settings for the test suite: the real PostgreSQL and Redis, a Redis database of its own."""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-ledgerflow-0123456789abcdefghijklmnop")
# Database 15, so a running development stack (database 0) never consumes the tests' messages.
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("LOG_JSON", "false")

from config.settings import *  # noqa: E402,F403

EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
