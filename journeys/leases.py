"""Leases of steps whose work is long or goes outside (sending email): the run is theirs until
`lease_until`, and a heartbeat keeps moving that on while the work runs. A worker that dies stops
renewing, so the lease lapses and recovery hands the step on; one that works long keeps it."""

from __future__ import annotations

import threading
from datetime import timedelta

import structlog
from django.conf import settings
from django.db import connection

log = structlog.get_logger(__name__)

# A step whose lease was not renewed for this long is presumed dead and handed on by recovery.
STEP_LEASE = timedelta(seconds=90)


def step_lease() -> timedelta:
    """STEP_LEASE, unless settings change it (JOURNEY_STEP_LEASE_SECONDS: fault tests' workers)."""
    seconds = getattr(settings, "JOURNEY_STEP_LEASE_SECONDS", None)
    return STEP_LEASE if seconds is None else timedelta(seconds=seconds)


def claim(run_pk: int, state: str) -> bool:
    """Take the step for step_lease() unless the run moved on or another worker holds it."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE journeys_journeyrun SET lease_until = now() + %s, attempt = attempt + 1, updated_at = now() "
            "WHERE id = %s AND phase = 'RUNNING' AND current_state = %s "
            "AND (lease_until IS NULL OR lease_until < now())",
            [step_lease(), run_pk, state],
        )
        return cursor.rowcount == 1


def _renew(run_pk: int, state: str) -> bool:
    """Move the lease on; False once the run left the step (done, cancelled) or lost its lease."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE journeys_journeyrun SET lease_until = now() + %s "
            "WHERE id = %s AND phase = 'RUNNING' AND current_state = %s AND lease_until IS NOT NULL",
            [step_lease(), run_pk, state],
        )
        return cursor.rowcount == 1


class Heartbeat:
    """`with Heartbeat(run_pk, state):` renews the lease every third of step_lease() until the block
    ends, from a thread with a database connection of its own (the work's may be mid-transaction)."""

    def __init__(self, run_pk: int, state: str) -> None:
        self.run_pk, self.state = run_pk, state
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{run_pk}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        interval = step_lease().total_seconds() / 3
        try:
            while not self._stop.wait(interval):
                if not _renew(self.run_pk, self.state):
                    return
        except Exception as exc:  # noqa: BLE001 - a missed renewal only risks a second worker, which the step tolerates
            log.warning("journey.lease_renewal_failed", run=self.run_pk, state=self.state, error=repr(exc))
        finally:
            connection.close()
