"""Reads of the daily write-off worth naming."""

from __future__ import annotations

from writeoffs.models import WriteOffReport


def report_for_run(*, tenant, journey_id: str) -> WriteOffReport | None:
    """The tenant's report of the run, or None (another tenant's run does not exist for the caller)."""
    return WriteOffReport.objects.filter(tenant=tenant, run__journey_id=journey_id).select_related("run").first()
