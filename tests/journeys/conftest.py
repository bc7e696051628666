"""Fixtures of the kernel's subprocess tests: a private Redis and workers that know the test journeys."""

import pytest

from tests.conftest import subprocess_env, suite_database_url, terminate_other_sessions
from tests.stack import CeleryProcesses, PrivateRedis


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.kill()


def segment_worker_env(redis_url: str, **variables: str) -> dict[str, str]:
    """The environment of a worker subprocess on `redis_url` and the test database."""
    return subprocess_env(
        DJANGO_SETTINGS_MODULE="config.settings",
        SECRET_KEY="fault-tests-secret-key-ledgerflow-0123456789abcdefghijklmnop",
        DATABASE_URL=suite_database_url(),
        REDIS_URL=redis_url,
        CELERY_BROKER_URL=redis_url,
        EMAIL_URL="dummymail://",
        **variables,
    )


@pytest.fixture
def segment_processes(request, tmp_path, private_redis):
    """Workers (`celery -A tests.journeys.segment_app`) on the private Redis; a test's
    `segment_worker_variables` mark adds environment variables."""
    mark = request.node.get_closest_marker("segment_worker_variables")
    variables = mark.kwargs if mark else {}
    processes = CeleryProcesses(tmp_path, segment_worker_env(private_redis.url, **variables), app="tests.journeys.segment_app")
    yield processes
    processes.kill_all()
    terminate_other_sessions()
