"""Reads worth naming: who is due today, what a run built, the scheduler's status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone

from consolidation.lifecycle import ConsolidatedStatus, KycStatus, PeriodType
from consolidation.models import ConsolidatedInvoice, ConsolidationSettings, CustomerBillingPeriod
from consolidation.periods import Period, period_containing
from core.timezones import business_zone

JOURNEY_NAME = "daily-consolidation"
DAILY_TASK = "consolidation.start_daily_runs"


def tenant_settings(tenant_id: int) -> ConsolidationSettings:
    """The tenant's settings row, or the defaults (unsaved) when it has none."""
    return ConsolidationSettings.objects.filter(tenant_id=tenant_id).first() or ConsolidationSettings(tenant_id=tenant_id)


def _due_filter(day: date) -> Q:
    following = day + timedelta(days=1)
    regular = Q(enabled=True) & (
        Q(period_type=PeriodType.WEEKLY, start_day=following.isoweekday())
        | Q(period_type=PeriodType.MONTHLY, start_day=following.day)
    )
    final = Q(enabled=False, final_period_end=day)
    return Q(kyc_status=KycStatus.APPROVED) & (regular | final)


def customers_due(*, tenant_id: int, day: date) -> list[int]:
    """Customers of the tenant whose billing period (or final period) ends on `day`."""
    return list(
        CustomerBillingPeriod.objects.filter(_due_filter(day), tenant_id=tenant_id)
        .order_by("customer_id")
        .values_list("customer_id", flat=True)
    )


def tenants_due(*, day: date) -> list[int]:
    return sorted(set(CustomerBillingPeriod.objects.filter(_due_filter(day)).values_list("tenant_id", flat=True)))


@dataclass(frozen=True, slots=True)
class Target:
    """One customer's consolidation to build: the period, and which invoice dates it takes."""

    customer_id: int
    period: Period
    # issue dates taken: since (opt-in date, or None) … until (period end, or the day it was turned off)
    since: date | None
    until: date
    currency: str


def targets_for(*, customer_ids: list[int], day: date) -> list[Target]:
    """The periods ending on `day` for these customers (regular or final), from their settings."""
    rows = (
        CustomerBillingPeriod.objects.filter(customer_id__in=customer_ids)
        .order_by("customer_id")
        .values_list(
            "customer_id", "enabled", "period_type", "start_day", "enabled_since",
            "disabled_on", "final_period_start", "final_period_end", "customer__currency",
        )
    )
    targets = []
    for customer_id, enabled, ptype, start_day, since, disabled_on, final_start, final_end, currency in rows:
        if enabled:
            period = period_containing(day, period_type=ptype, start_day=start_day)
            targets.append(Target(customer_id, period, since, period.end, currency))
        elif final_end is not None:
            period = Period(ptype, final_start, final_end)
            targets.append(Target(customer_id, period, since, min(disabled_on or final_end, final_end), currency))
    return targets


@dataclass(frozen=True, slots=True)
class RunDrafts:
    count: int
    invoice_count: int
    totals_by_currency: dict[str, Decimal]


def run_drafts(*, run_pk: int) -> RunDrafts:
    """What a run built and has not issued yet: totals summed in the database, per currency."""
    drafts = ConsolidatedInvoice.objects.filter(journey_run_id=run_pk, status=ConsolidatedStatus.DRAFT)
    per_currency = drafts.values("currency").annotate(total=Sum("total"), n=Count("id"), invoices=Sum("invoice_count"))
    totals, count, invoices = {}, 0, 0
    for row in per_currency:
        totals[row["currency"]] = row["total"]
        count += row["n"]
        invoices += row["invoices"]
    return RunDrafts(count=count, invoice_count=invoices, totals_by_currency=totals)


def consolidated_invoices_for_tenant(tenant) -> QuerySet[ConsolidatedInvoice]:
    return ConsolidatedInvoice.objects.filter(tenant=tenant).select_related("customer").prefetch_related("lines")


def _run_hour() -> int:
    return getattr(settings, "CONSOLIDATION_RUN_HOUR", 1)


def next_run_at(now: datetime | None = None) -> datetime:
    """The next daily run: CONSOLIDATION_RUN_HOUR:00 in the business zone, after `now`."""
    local = (now or timezone.now()).astimezone(business_zone())
    candidate = local.replace(hour=_run_hour(), minute=0, second=0, microsecond=0)
    if candidate <= local:
        # wall-clock arithmetic on a zoneinfo datetime: the offset follows a DST change
        candidate = candidate + timedelta(days=1)
    return candidate


def scheduler_status(*, tenant) -> dict:
    """The daily run's beat entry and this tenant's last run, shaped like the old scheduler status."""
    from django_celery_beat.models import PeriodicTask

    from journeys.public import JourneyRun, step_lease

    entry = PeriodicTask.objects.filter(name=DAILY_TASK).select_related("crontab").first()
    last = JourneyRun.objects.filter(tenant=tenant, journey_name=JOURNEY_NAME).order_by("-id").first()
    schedule = f"0 {_run_hour()} * * *"
    if entry is not None and entry.crontab is not None:
        c = entry.crontab
        schedule = f"{c.minute} {c.hour} {c.day_of_month} {c.month_of_year} {c.day_of_week}"
    return {
        "isRunning": bool(entry and entry.enabled),
        "schedule": schedule,
        "timezone": str(business_zone()),
        # how long one worker holds a run's step before another may take it over (ms)
        "lockTimeout": int(step_lease().total_seconds() * 1000),
        "lastRun": None
        if last is None
        else {
            "journeyId": last.journey_id,
            "phase": last.phase,
            "currentState": last.current_state,
            "businessDate": last.context.get("businessDate"),
            "startedAt": last.created_at.isoformat(),
            "output": last.output,
        },
        "nextRun": next_run_at().isoformat(),
    }
