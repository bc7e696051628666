"""Settings for the test suite: the real PostgreSQL and Redis, a Redis database of its own.

On a machine with neither, the suite runs on embedded ones instead (config/embedded.py, same
LEDGERFLOW_SERVICES rules as the run command), kept apart from the development data.
"""

import atexit
import os

from config.embedded import ServicesError, resolve

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-ledgerflow-0123456789abcdefghijklmnop")
os.environ.setdefault("LOG_JSON", "false")

try:
    # Database 15, so a running development stack (database 0) never consumes the tests' messages.
    _services = resolve(os.environ, redis_db=15, data_subdir="test-services")
except ServicesError:
    # A configured server that does not answer: the tests that need it say so, as before.
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
else:
    os.environ.update(_services.environ())
    atexit.register(_services.stop, quiet=True)

from config.settings import *  # noqa: E402,F403

EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
