"""The monthly invoicing batch (journey `monthly-invoicing-batch`).

Configured once per tenant and batchId (POST /api/v1/journeys/monthly-invoicing-batch/start): the
configuration run ends at once with status SCHEDULED and binds a schedule; every occurrence of the
schedule then starts a scheduled run:

    draftInvoices            one draft per active customer for the previous calendar month;
                             nothing to bill → recordNothingToBill → done (no approval)
    recordNothingToBill      lastRun NOTHING_TO_BILL (e.g. a second occurrence of a billed period)
    validateDrafts           blocking findings? → recordValidationFailure → done (no approval)
    waitForFinanceApproval   step approveInvoiceBatch: APPROVED → sendInvoices, REJECTED → recordRejection;
                             the kernel approves by itself when the tenant's ApprovalPolicy needs
                             nobody for the batch's totals (never, or within its threshold)
    recordRejection          lastRun REJECTED; the drafts are cancelled, their charges released
    sendInvoices             numbered, payment_due, emailed with the PDF → lastRun SENT | SEND_FAILED
    waitBeforeFirstReminder  timer: the latest due date + gracePeriodDuration (default P7D)
    sendFirstReminder        only invoices still unpaid
    waitBeforeFinalNotice    timer: reminderGapDuration (default P7D)
    sendFinalNotice          only invoices still unpaid → lastRun CHASE_COMPLETED
    done

Every lastRun is copied onto the configuration run's result too; a run that FAILED leaves
lastRun FAILED there with its error {code, reason}.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta

from django.core.management.base import CommandError
from django.db import transaction
from django.utils import timezone

from core.errors import ValidationFailed
from core.timezones import business_today, business_zone
from invoicing import batch
from invoicing.emails import FINAL_NOTICE, INVOICE, REMINDER
from journeys.public import (
    Approval,
    Configure,
    InvalidInterval,
    Journey,
    JourneyRun,
    Phase,
    Policy,
    StepContext,
    Succeed,
    Task,
    Timer,
    add_fits,
    check_schedule_fits,
    parse_interval,
    register,
    schedule_configure,
)
from tenancy.models import Tenant

NAME = "monthly-invoicing-batch"
DEFAULT_GAP = "P7D"


def _period(context: dict) -> batch.BillingPeriod:
    if context.get("billingPeriodStart") and context.get("billingPeriodEnd"):
        return batch.BillingPeriod(
            start=date.fromisoformat(context["billingPeriodStart"]), end=date.fromisoformat(context["billingPeriodEnd"])
        )
    scheduled_for = datetime.fromisoformat(context["scheduledFor"]) if context.get("scheduledFor") else timezone.now()
    return batch.previous_month(business_today(scheduled_for))


def _record_last_run(ctx: StepContext, status: str, **fields) -> None:
    """lastRun on this run, and on its configuration run's result."""
    last_run = {"batchId": ctx.context.get("batchId"), "runAt": timezone.now().isoformat(), "status": status, **fields}
    ctx.context["lastRun"] = last_run
    if ctx.parent_pk:
        with transaction.atomic():
            parent = JourneyRun.objects.select_for_update().get(pk=ctx.parent_pk)
            parent.output = {**(parent.output or {}), "lastRun": last_run}
            parent.save(update_fields=["output", "updated_at"])


def draft_invoices(ctx: StepContext) -> str:
    period = _period(ctx.context)
    summary = batch.batch_draft(
        tenant=Tenant.objects.get(pk=ctx.tenant_id),
        batch_id=ctx.context["batchId"],
        run_pk=ctx.run_pk,
        period=period,
        actor=ctx.actor,
    )
    ctx.context["billingPeriod"] = {"start": period.start.isoformat(), "end": period.end.isoformat()}
    ctx.context["batch"] = summary.as_context()
    return "drafted" if summary.invoice_count else "nothing"


def record_nothing_to_bill(ctx: StepContext) -> None:
    _record_last_run(ctx, "NOTHING_TO_BILL", billingPeriod=ctx.context["billingPeriod"], invoiceCount=0)


def validate_drafts(ctx: StepContext) -> str:
    ctx.context["validation"] = batch.batch_validate(run_pk=ctx.run_pk)
    return "ok" if ctx.context["validation"]["ok"] else "invalid"


def record_validation_failure(ctx: StepContext) -> None:
    batch.batch_cancel_drafts(run_pk=ctx.run_pk, actor=ctx.actor, reason="monthly batch failed validation")
    validation = ctx.context["validation"]
    _record_last_run(ctx, "VALIDATION_FAILED", issueCount=validation["issueCount"], issues=validation["issues"])


def record_rejection(ctx: StepContext) -> None:
    batch.batch_cancel_drafts(run_pk=ctx.run_pk, actor=ctx.actor, reason="monthly batch rejected")
    _record_last_run(ctx, "REJECTED", reason=(ctx.context.get("approval") or {}).get("comment") or None)


def send_invoices(ctx: StepContext) -> None:
    tenant = Tenant.objects.get(pk=ctx.tenant_id)
    batch.batch_issue(tenant=tenant, run_pk=ctx.run_pk, issue_date=business_today(), actor=ctx.actor)
    result = batch.batch_send(run_pk=ctx.run_pk, kind=INVOICE, actor=ctx.actor)
    status = "SENT" if result.failed == 0 else "SEND_FAILED"
    _record_last_run(ctx, status, sentCount=result.sent, failedCount=result.failed)


def send_first_reminder(ctx: StepContext) -> None:
    result = batch.batch_send(run_pk=ctx.run_pk, kind=REMINDER, actor=ctx.actor)
    ctx.context["remindedCount"], ctx.context["reminderFailedCount"] = result.sent, result.failed


def send_final_notice(ctx: StepContext) -> None:
    final = batch.batch_send(run_pk=ctx.run_pk, kind=FINAL_NOTICE, actor=ctx.actor)
    _record_last_run(
        ctx,
        "CHASE_COMPLETED",
        remindedCount=ctx.context.get("remindedCount", 0),
        reminderFailedCount=ctx.context.get("reminderFailedCount", 0),
        finalNoticeCount=final.sent,
        finalNoticeFailedCount=final.failed,
    )


def first_reminder_due(context: dict, now: datetime) -> datetime:
    """gracePeriodDuration after the batch's latest due date (the end of that business day)."""
    grace = parse_interval(context.get("gracePeriodDuration") or DEFAULT_GAP)
    due = context.get("latestDueDate")
    if not due:
        return now + grace
    end_of_due_day = datetime.combine(date.fromisoformat(due) + timedelta(days=1), time.min, tzinfo=business_zone())
    return max(now, end_of_due_day + grace)


def final_notice_due(context: dict, now: datetime) -> datetime:
    return now + parse_interval(context.get("reminderGapDuration") or DEFAULT_GAP)


def note_latest_due_date(ctx: StepContext) -> None:
    latest = batch.batch_latest_due_date(run_pk=ctx.run_pk)
    ctx.context["latestDueDate"] = latest.isoformat() if latest else None


def record_failure(run: JourneyRun) -> None:
    """A scheduled run that FAILED: lastRun FAILED with its error on the configuration run."""
    if run.phase != Phase.FAILED or not run.parent_id or not run.error:
        return
    last_run = {
        "batchId": (run.context or {}).get("batchId"),
        "runAt": timezone.now().isoformat(),
        "status": "FAILED",
        "journeyId": run.journey_id,
        "error": {"code": run.error.get("code", ""), "reason": run.error.get("reason", "")},
    }
    with transaction.atomic():
        parent = JourneyRun.objects.select_for_update().get(pk=run.parent_id)
        parent.output = {**(parent.output or {}), "lastRun": last_run}
        parent.save(update_fields=["output", "updated_at"])


def approval_summary(context: dict) -> dict:
    return {
        "billingPeriod": context.get("billingPeriod"),
        **(context.get("batch") or {}),
        "issues": (context.get("validation") or {}).get("issues", []),
    }


# What a batchId may be (it names the schedule and appears in logs and URLs).
BATCH_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,100}$"


def _require_schedule_fits(*, first_run_at: datetime, interval: str, max_runs: int, grace: str, gap: str) -> None:
    """Every run, and the chasing after the last one, falls on a date (before the year 10000)."""
    try:
        last = check_schedule_fits(first_run_at, interval, max_runs, business_zone())
    except InvalidInterval as exc:
        raise ValidationFailed(str(exc), field="interval") from None
    for field, duration in (("gracePeriodDuration", grace), ("reminderGapDuration", gap)):
        try:
            last = add_fits(last, duration)
        except InvalidInterval as exc:
            raise ValidationFailed(str(exc), field=field) from None


def batch_configure(
    *,
    tenant: Tenant,
    batch_id: str,
    first_run_at: datetime,
    interval: str,
    max_runs: int,
    grace_period: str = DEFAULT_GAP,
    reminder_gap: str = DEFAULT_GAP,
    user=None,
    actor,
    extras: dict | None = None,
):
    """Configure (upsert on tenant + batchId) the batch's schedule; the API and `manage.py journey
    start` both come here, so a scheduled run cannot tell how it was configured."""
    _require_schedule_fits(
        first_run_at=first_run_at, interval=interval, max_runs=max_runs, grace=grace_period, gap=reminder_gap
    )
    context = {
        **(extras or {}),
        "tenantId": tenant.slug,
        "batchId": batch_id,
        "firstRunAt": first_run_at.isoformat(),
        "interval": interval,
        "maxRuns": max_runs,
        "gracePeriodDuration": grace_period,
        "reminderGapDuration": reminder_gap,
    }
    return schedule_configure(
        journey_name=NAME, tenant=tenant, key=batch_id, first_run_at=first_run_at, interval=interval,
        max_runs=max_runs, context=context, user=user, actor=actor,
    )


# --- `manage.py journey start monthly-invoicing-batch …` -----------------------------------------
def _cli_arguments(parser) -> None:
    parser.add_argument("--batch-id", required=True)
    parser.add_argument(
        "--first-run-at", required=True, help="RFC 3339 with an offset, e.g. 2026-12-01T06:00:00Z"
    )
    parser.add_argument("--interval", required=True, help="ISO 8601 duration, e.g. P1M")
    parser.add_argument("--max-runs", type=int, required=True)
    parser.add_argument(
        "--grace", default=DEFAULT_GAP, help="after the latest due date, before the first reminder"
    )
    parser.add_argument("--gap", default=DEFAULT_GAP, help="between the first reminder and the final notice")


def _aware(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CommandError(f"--first-run-at: {text!r} is not an RFC 3339 date-time") from None
    if value.tzinfo is None:
        raise CommandError(
            "--first-run-at needs an offset (e.g. 2026-12-01T06:00:00Z): a time without one is ambiguous."
        )
    return value


def _cli_start(*, tenant: Tenant, options: dict, user, actor):
    """The command's options, checked as the API checks its body, then batch_configure."""
    if not re.match(BATCH_ID_PATTERN, options["batch_id"]):
        raise CommandError("--batch-id: 1 to 100 of A-Z a-z 0-9 . _ : -")
    first_run_at = _aware(options["first_run_at"])
    for flag in ("interval", "grace", "gap"):
        try:
            parse_interval(options[flag])
        except InvalidInterval as exc:
            raise CommandError(f"--{flag}: {exc}") from None
    if not 1 <= options["max_runs"] <= 10000:
        raise CommandError("--max-runs: from 1 to 10000")
    schedule = batch_configure(
        tenant=tenant,
        batch_id=options["batch_id"],
        first_run_at=first_run_at,
        interval=options["interval"],
        max_runs=options["max_runs"],
        grace_period=options["grace"],
        reminder_gap=options["gap"],
        user=user,
        actor=actor,
    )
    message = (
        f"Configured {NAME} {schedule.key} for {tenant.slug}: configuration journey "
        f"{schedule.config_run.journey_id} ({schedule.config_run.output.get('status')}), first run "
        f"{first_run_at.isoformat()}, every {schedule.interval}, {schedule.max_runs} runs."
    )
    return schedule, message


def progress(run) -> list[tuple[str, int, int]]:
    """What `--follow` shows besides the steps: the run's invoices sent of those drafted."""
    from invoicing.models import Invoice

    invoices = Invoice.objects.filter(batch_run=run)
    return [("invoices sent", invoices.filter(sent_at__isnull=False).count(), invoices.count())]


def config_output(context: dict) -> dict:
    return {
        "status": "SCHEDULED",
        **{k: context[k] for k in ("tenantId", "batchId", "firstRunAt", "interval", "maxRuns")},
    }


monthly_invoicing_batch = register(
    Journey(
        name=NAME,
        start="draftInvoices",
        config_output=config_output,
        on_finish=record_failure,
        configure=Configure(
            add_arguments=_cli_arguments,
            start=_cli_start,
            help="configure (create or update) the monthly invoicing batch's schedule",
        ),
        progress=progress,
        states=[
            Task("draftInvoices", draft_invoices, routes={"drafted": "validateDrafts", "nothing": "recordNothingToBill"}),
            Task("recordNothingToBill", record_nothing_to_bill, next="done"),
            Task("validateDrafts", validate_drafts, routes={"ok": "waitForFinanceApproval", "invalid": "recordValidationFailure"}),
            Task("recordValidationFailure", record_validation_failure, next="done"),
            Approval(
                "waitForFinanceApproval",
                step_id="approveInvoiceBatch",
                routes={"APPROVED": "sendInvoices", "REJECTED": "recordRejection"},
                summary=approval_summary,
                policy=Policy(amounts=lambda context: (context.get("batch") or {}).get("totalsByCurrency") or {}),
            ),
            Task("recordRejection", record_rejection, next="done"),
            # Long and outside-facing: leased, each email its own transaction, on the io queue.
            Task("sendInvoices", send_invoices, transactional=False, queue="io", next="noteDueDates"),
            Task("noteDueDates", note_latest_due_date, next="waitBeforeFirstReminder"),
            Timer("waitBeforeFirstReminder", due_at=first_reminder_due, next="sendFirstReminder"),
            Task("sendFirstReminder", send_first_reminder, transactional=False, queue="io", next="waitBeforeFinalNotice"),
            Timer("waitBeforeFinalNotice", due_at=final_notice_due, next="sendFinalNotice"),
            Task("sendFinalNotice", send_final_notice, transactional=False, queue="io", next="done"),
            Succeed("done", output=lambda context: {"status": context["lastRun"]["status"], "lastRun": context["lastRun"]}),
        ],
    )
)

