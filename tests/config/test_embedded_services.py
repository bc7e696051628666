"""Embedded PostgreSQL and Redis: the decision (auto/embedded/external) and the whole stack on them.

The stack tests start `python -m config.launch` in a subprocess, with a data directory and a port of
their own, so they never touch a developer's `.ledgerflow/` or a running stack.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from config import embedded
from config.embedded import ServicesError, celery_broker_url, resolve
from tests.conftest import subprocess_env

REPO = Path(__file__).resolve().parents[2]
# web, worker and beat as in the project's Procfile, trimmed to one process each and bound to
# localhost: the test runs beside other stacks.
TEST_PROCFILE = """\
web: gunicorn config.wsgi --bind 127.0.0.1:${PORT} --workers 1 --access-logfile -
worker: celery -A config worker -Q default,io -l info --concurrency 1
beat: celery -A config beat -l info --scheduler operations.beat:Scheduler
"""
START_TIMEOUT = 90
STOP_TIMEOUT = 45
TOKEN_LINE = re.compile(r"^\s+acme\s+acme-operator\s+\S+\s+([0-9a-f]{40})\s*$", re.MULTILINE)  # seed_demo: slug, user, role, token


# --- The decision -----------------------------------------------------------------------------
@pytest.fixture
def live_port():
    """A port where something accepts connections."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def dead_port() -> int:
    """A port where nothing listens (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _decide(**env):
    return resolve({key: value for key, value in env.items() if value is not None}, start_embedded=False)


def test_auto_uses_configured_urls(live_port):
    database_url = f"postgres://app:secret@127.0.0.1:{live_port}/ledgerflow"
    redis_url = f"redis://127.0.0.1:{live_port}/3"

    services = _decide(DATABASE_URL=database_url, REDIS_URL=redis_url)

    assert (services.database.url, services.database.embedded) == (database_url, False)
    assert (services.redis.url, services.redis.embedded) == (redis_url, False)
    assert services.database.reason == "DATABASE_URL is set"
    assert services.environ()["CELERY_BROKER_URL"] == redis_url


def test_auto_uses_default_servers_that_answer(live_port):
    services = _decide(LEDGERFLOW_PG_PROBE=f"127.0.0.1:{live_port}", LEDGERFLOW_REDIS_PROBE=f"127.0.0.1:{live_port}")

    assert services.database.url == f"postgres://postgres@127.0.0.1:{live_port}/ledgerflow"
    assert services.redis.url == f"redis://127.0.0.1:{live_port}/0"
    assert not services.database.embedded and not services.redis.embedded


def test_auto_embeds_each_server_that_is_unset_and_silent(live_port):
    port = dead_port()

    services = _decide(LEDGERFLOW_PG_PROBE=f"127.0.0.1:{port}", REDIS_URL=f"redis://127.0.0.1:{live_port}/0")

    assert services.database.embedded
    assert services.database.reason == f"DATABASE_URL unset and nothing answers at postgres://postgres@127.0.0.1:{port}/ledgerflow"
    assert not services.redis.embedded


def test_embedded_mode_ignores_servers_that_answer(live_port):
    services = _decide(
        LEDGERFLOW_SERVICES="embedded",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{live_port}/ledgerflow",
        LEDGERFLOW_REDIS_PROBE=f"127.0.0.1:{live_port}",
    )

    assert services.database.embedded and services.redis.embedded
    assert services.database.reason == "LEDGERFLOW_SERVICES=embedded; DATABASE_URL ignored"


def test_external_mode_fails_fast_naming_the_default_url():
    port = dead_port()

    with pytest.raises(ServicesError, match=rf"nothing answers at postgres://postgres@127\.0\.0\.1:{port}/ledgerflow"):
        _decide(LEDGERFLOW_SERVICES="external", LEDGERFLOW_PG_PROBE=f"127.0.0.1:{port}")


def test_a_configured_url_that_does_not_answer_is_named_without_its_password():
    port = dead_port()

    with pytest.raises(ServicesError) as error:
        _decide(LEDGERFLOW_SERVICES="external", DATABASE_URL=f"postgres://app:hunter2@127.0.0.1:{port}/ledgerflow")

    assert f"DATABASE_URL=postgres://app:***@127.0.0.1:{port}/ledgerflow does not answer" in str(error.value)
    assert "hunter2" not in str(error.value)


def test_unknown_mode_is_refused():
    with pytest.raises(ServicesError, match="not one of auto, embedded, external"):
        _decide(LEDGERFLOW_SERVICES="sometimes")


def test_celery_reaches_a_unix_socket_through_redis_socket_transport():
    assert celery_broker_url("unix:///data/redis/redis.sock") == "redis+socket:///data/redis/redis.sock"
    assert celery_broker_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_a_unix_socket_url_is_probed_on_its_socket(tmp_path):
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen()

        assert embedded._answers(*embedded._redis_address(f"unix://{path}"))
    assert not embedded._answers(*embedded._redis_address(f"unix://{tmp_path / 'none.sock'}"))


# --- The whole stack on embedded servers ------------------------------------------------------
class Stack:
    """One run of the launcher in a subprocess; its output goes to a file the test reads."""

    def __init__(self, workdir: Path, env: dict[str, str], run: int):
        self.log_path = workdir / f"launch-{run}.log"
        self.port = int(env["PORT"])
        self.base = f"http://127.0.0.1:{self.port}"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "config.launch", "--procfile", str(workdir / "Procfile")],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"launcher exited with {self.process.returncode}:\n{self.output[-4000:]}")
            try:
                if requests.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):
                pass  # not listening yet, or its first request is still loading the application
            time.sleep(0.2)
        raise AssertionError(f"not ready within {START_TIMEOUT}s:\n{self.output[-4000:]}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise


def _stack_env(data_dir: Path, **overrides) -> dict[str, str]:
    env = subprocess_env(
        DEBUG="true",
        PORT=str(dead_port()),
        LEDGERFLOW_DATA_DIR=str(data_dir),
        # ensure_admin would otherwise keep a generated password in the checkout's .ledgerflow/.
        LEDGERFLOW_ADMIN_PASSWORD="embedded-stack-test-password",
    )
    env.update(overrides)
    return env


def _processes_using(data_dir: Path) -> list[str]:
    found = []
    for process in psutil.process_iter(["pid", "name", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(data_dir) in cmdline and process.info["name"] in ("postgres", "redis-server"):
            found.append(f"{process.info['pid']} {cmdline}")
    return found


def _wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"condition not met within {timeout}s")


@pytest.mark.embedded_services
@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", ["embedded", "auto"])
def test_stack_on_embedded_servers_keeps_data_across_restarts_and_runs_tasks(mode, tmp_path):
    # given: no DATABASE_URL or REDIS_URL; in auto mode, the default probes find nothing
    (tmp_path / "Procfile").write_text(TEST_PROCFILE)
    data_dir = tmp_path / "data"
    if mode == "embedded":
        overrides = {"LEDGERFLOW_SERVICES": "embedded"}
    else:
        overrides = {"LEDGERFLOW_PG_PROBE": f"127.0.0.1:{dead_port()}", "LEDGERFLOW_REDIS_PROBE": f"127.0.0.1:{dead_port()}"}
    env = _stack_env(data_dir, **overrides)

    # when: the stack starts
    first = Stack(tmp_path, env, run=1)
    try:
        first.wait_ready()
        output = first.output
        # then: the choice is logged, with the reason
        if mode == "embedded":
            assert f"database: postgres://postgres@/ledgerflow?host={data_dir / 'pgdata'} (LEDGERFLOW_SERVICES=embedded)" in output
            assert f"broker:   redis+socket://{data_dir / 'redis' / 'redis.sock'} (LEDGERFLOW_SERVICES=embedded)" in output
        else:
            assert re.search(r"database: postgres://postgres@/ledgerflow\?host=\S+ \(DATABASE_URL unset and nothing answers at postgres://postgres@127\.0\.0\.1:\d+/ledgerflow\)", output)
            assert re.search(r"broker:   redis\+socket://\S+ \(REDIS_URL unset and nothing answers at redis://127\.0\.0\.1:\d+/0\)", output)

        # and: demo data and its tokens are there; a customer is created over the API
        token = TOKEN_LINE.search(output).group(1)
        session = requests.Session()
        session.headers["Authorization"] = f"Token {token}"
        created = session.post(f"{first.base}/api/v1/customers", json={"name": "Embedded Air", "currency": "EUR", "email": "ap@embedded.example"}, timeout=10)
        assert created.status_code == 201, created.text
        customer_id = created.json()["id"]

        # and: issuing an invoice sends it through the worker, over the embedded Redis
        draft = session.post(
            f"{first.base}/api/v1/invoices",
            json={"customer": customer_id, "items": [{"description": "Landing fee", "unitAmount": "120.00"}]},
            headers={"Idempotency-Key": f"embedded-{mode}"},
            timeout=10,
        )
        assert draft.status_code == 201, draft.text
        invoice_url = f"{first.base}/api/v1/invoices/{draft.json()['id']}"
        assert session.post(f"{invoice_url}/issue", json={}, timeout=10).status_code == 200
        _wait_for(lambda: session.get(invoice_url, timeout=10).json()["sentAt"])
    finally:
        # when: it is stopped
        code = first.stop()

    # then: everything exits, embedded servers included
    assert code == 0, first.output[-4000:]
    assert "services.stopped" in first.output
    assert _processes_using(data_dir) == []
    assert not (data_dir / "redis" / "redis.sock").exists()

    # when: it starts again on the same data
    second = Stack(tmp_path, env, run=2)
    try:
        second.wait_ready()
        # then: the customer is still there
        again = session.get(f"{second.base}/api/v1/customers/{customer_id}", timeout=10)
        assert again.status_code == 200, again.text
        assert again.json()["name"] == "Embedded Air"
        assert "Demo data: 0 tenants" in second.output
    finally:
        assert second.stop() == 0, second.output[-4000:]
    assert _processes_using(data_dir) == []
