"""Subprocess stacks for tests: a private Redis, Celery worker and beat subprocesses, and making
this process publish to that Redis. Used by the fault tests and the newcomer's path; each test
gives the subprocesses a clean environment (tests.conftest.subprocess_env)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from kombu import pools


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- A private Redis, killable and restartable on the same port -----------------------------------
class PrivateRedis:
    def __init__(self, directory: Path):
        self.port = free_port()
        self.directory = directory
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed")
        # keeps nothing: a restart comes back empty, as a lost broker would
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url).ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


# --- Celery subprocesses --------------------------------------------------------------------------
class CeleryProcesses:
    """Worker and beat subprocesses, each in its own process group so SIGKILL takes its children."""

    def __init__(self, tmp_path: Path, env: dict[str, str], app: str = "config"):
        self.tmp_path, self.env, self.app = tmp_path, env, app
        self.started: list[subprocess.Popen] = []

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.tmp_path / f"{name}-{len(self.started)}.log", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", self.app, *args],
            cwd=self.tmp_path,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started.append(process)
        return process

    def worker(self) -> subprocess.Popen:
        return self._start(
            "worker",
            [
                "worker",
                "-Q",
                "default,io",
                "-c",
                "1",
                "--pool",
                "prefork",
                "-l",
                "info",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
        )

    def beat(self) -> subprocess.Popen:
        return self._start(
            "beat", ["beat", "-l", "info", "--scheduler", "operations.beat:Scheduler"]
        )

    @staticmethod
    def kill(process: subprocess.Popen) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def kill_all(self) -> None:
        for process in self.started:
            self.kill(process)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.tmp_path.glob("*.log"))
        )


@contextlib.contextmanager
def publishing_to(url: str):
    """Make this process's Celery app publish to `url` (the private Redis) for the block."""
    from config.celery_app import app

    def reset() -> None:
        # kombu keeps its pools in process-wide registries keyed by URL: close and forget them all
        pools.reset()
        app._pool = None
        app.amqp._producer_pool = None

    previous = app.conf.broker_url, app.conf.broker_write_url
    app.conf.broker_url = app.conf.broker_write_url = url
    reset()
    try:
        yield reset
    finally:
        app.conf.broker_url, app.conf.broker_write_url = previous
        reset()
