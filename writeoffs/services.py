"""Every write of the daily write-off: propose candidates, apply them in chunks, report, notify.

Invariants:
- A candidate is unique per (invoice, business date); the kernel's Map state runs the pending
  candidates in chunks and moves the run on once every chunk has an outcome (rows in PostgreSQL,
  no chord counter, nothing held in Redis); a candidate left pending by a chunk that failed for
  good is reported failed.
- Each invoice's adjustments carry `writeoff:{invoice}:{line}:{businessDate}`: a duplicated or
  retried chunk task, or a second run the same day, never applies one twice.
- One invoice's failure is recorded on its candidate and never stops the others.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import hmac
import io
import json
import time
from datetime import date, datetime, timedelta

import requests
import structlog
from django.conf import settings
from django.core.mail import send_mail
from django.db import connection, transaction
from django.db.models import Count, DecimalField, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing.lifecycle import CancellationSource, SubscriptionStatus
from billing.models import Subscription
from core.actors import Actor
from core.attribution import audited
from core.money import ZERO
from core.timezones import business_zone
from invoicing.lifecycle import OPEN_STATUSES
from journeys.public import JourneyRun, Phase, run_start
from tenancy.models import Tenant
from writeoffs.models import CandidateStatus, Provider, WriteOffCandidate, WriteOffReport, WriteOffSettings
from writeoffs.providers import WriteOffFailed

log = structlog.get_logger(__name__)

JOURNEY_NAME = "daily-write-off"
# Chunks of one run in flight at once: enough to keep the io queue's threads busy on a remote
# provider (each invoice waits on the network), few enough that one run never takes the whole queue.
CHUNKS_IN_FLIGHT = 8
# The three known sources of leftover balances; API cancellations settle their own invoices.
SOURCES = (CancellationSource.MMA, CancellationSource.AUTOCANCEL, CancellationSource.SALESFORCE, CancellationSource.UI)
# Cancellations 1 to 5 days before the run's business date (both ends included, as business dates).
WINDOW_FIRST_DAY, WINDOW_LAST_DAY = 5, 1
# How many candidates the approver sees listed (all of them are counted in the totals).
SUMMARY_LIMIT = 200
# Failed invoices listed in the run's outcome (the CSV report has every one).
OUTCOME_FAILED_LIMIT = 1000
_MONEY = DecimalField(max_digits=22, decimal_places=4)


def cancellation_window(business_date: date) -> tuple[datetime, datetime]:
    """[start, end) instants of the cancellations a run on `business_date` looks at."""
    zone = business_zone()
    first = business_date - timedelta(days=WINDOW_FIRST_DAY)
    after_last = business_date - timedelta(days=WINDOW_LAST_DAY - 1)
    return (
        datetime(first.year, first.month, first.day, tzinfo=zone),
        datetime(after_last.year, after_last.month, after_last.day, tzinfo=zone),
    )


# --- Starting the daily runs ---------------------------------------------------------------------
def writeoff_runs_start_daily(*, business_date: date, actor: Actor) -> list[JourneyRun]:
    """One run per tenant with recent cancellations and per business date, however often called."""
    start, end = cancellation_window(business_date)
    tenant_ids = (
        Subscription.objects.filter(
            status=SubscriptionStatus.CANCELLED, cancelled_at__gte=start, cancelled_at__lt=end, cancellation_source__in=SOURCES
        )
        .values_list("tenant_id", flat=True)
        .distinct()
    )
    runs = []
    for tenant in Tenant.objects.filter(pk__in=tenant_ids).order_by("pk"):
        run, created = run_start(
            journey_name=JOURNEY_NAME,
            tenant=tenant,
            actor=actor,
            context={"businessDate": business_date.isoformat()},
            subject_id=business_date.isoformat(),
            dedupe_key=business_date.isoformat(),
        )
        runs.append(run)
        log.info("writeoff_run.started" if created else "writeoff_run.exists", tenant=tenant.pk, run=run.journey_id)
    return runs


# --- findCandidates ------------------------------------------------------------------------------
_FIND_SQL = """
INSERT INTO writeoffs_writeoffcandidate
    (tenant_id, run_id, invoice_id, subscription_id, business_date, currency, balance, source, status,
     written_off_amount, adjustments, error)
SELECT DISTINCT ON (i.id) i.tenant_id, %(run)s, i.id, s.id, %(business_date)s, i.currency, i.balance,
       s.cancellation_source, 'pending', 0, 0, ''
FROM billing_subscription s
JOIN invoicing_invoiceitem ii ON ii.subscription_id = s.id AND ii.tenant_id = s.tenant_id
JOIN invoicing_invoice i ON i.id = ii.invoice_id AND i.customer_id = s.customer_id AND i.tenant_id = s.tenant_id
WHERE s.tenant_id = %(tenant)s AND s.status = 'cancelled'
  AND s.cancelled_at >= %(start)s AND s.cancelled_at < %(end)s
  AND s.cancellation_source = ANY(%(sources)s)
  AND i.balance <> 0 AND i.status = ANY(%(statuses)s)
  -- a source of an issued consolidated invoice changes only through that one
  AND i.consolidated_into_id IS NULL
ORDER BY i.id, s.cancelled_at DESC, s.id DESC
ON CONFLICT (invoice_id, business_date) DO NOTHING
"""


def writeoff_find_candidates(*, run_pk: int, tenant_id: int, business_date: date) -> dict:
    """Record this run's candidates (in the caller's audited transaction) and return its summary.

    Candidates: open invoices with a non-zero balance that bill a subscription of the same
    customer cancelled 1–5 days before `business_date` by one of SOURCES, and are not on an
    issued consolidated invoice (those change only through it).
    """
    start, end = cancellation_window(business_date)
    with connection.cursor() as cursor:
        cursor.execute(
            _FIND_SQL,
            {
                "run": run_pk,
                "tenant": tenant_id,
                "business_date": business_date,
                "start": start,
                "end": end,
                "sources": [str(s) for s in SOURCES],
                "statuses": [str(s) for s in OPEN_STATUSES],
            },
        )
    return candidates_summary(run_pk=run_pk)


def candidates_summary(*, run_pk: int) -> dict:
    """What the approver sees: count, totals per currency and per source, the first candidates."""
    candidates = WriteOffCandidate.objects.filter(run_id=run_pk)
    by_currency = {
        row["currency"]: str(row["total"])
        for row in candidates.values("currency").annotate(total=Coalesce(Sum("balance"), ZERO, output_field=_MONEY)).order_by("currency")
    }
    by_source: dict[str, dict[str, str]] = {}
    for row in candidates.values("source", "currency").annotate(total=Sum("balance", output_field=_MONEY), n=Count("id")).order_by("source", "currency"):
        by_source.setdefault(row["source"], {})[row["currency"]] = str(row["total"])
    listed = [
        {
            "invoiceId": row["invoice_id"],
            "invoiceNumber": row["invoice__number"],
            "customer": row["invoice__customer__name"],
            "balance": str(row["balance"]),
            "currency": row["currency"],
            "source": row["source"],
        }
        for row in candidates.order_by("pk").values(
            "invoice_id", "invoice__number", "invoice__customer__name", "balance", "currency", "source"
        )[:SUMMARY_LIMIT]
    ]
    return {"count": candidates.count(), "totalsByCurrency": by_currency, "totalsBySource": by_source, "candidates": listed}


# --- applyWriteOffs ------------------------------------------------------------------------------
def writeoff_chunk_size(tenant_id: int) -> int:
    """Candidates per chunk of the tenant's provider."""
    provider = WriteOffSettings.objects.filter(tenant_id=tenant_id).values_list("provider", flat=True).first()
    # local chunks are set-based SQL (bigger is cheaper per invoice); remote ones wait on the network,
    # so small chunks spread one run across all of the io queue's threads
    return settings.WRITEOFF_REMOTE_CHUNK_SIZE if provider == Provider.ZUORA else settings.WRITEOFF_CHUNK_SIZE


def writeoff_pending_ids(*, run_pk: int) -> list[int]:
    """The run's candidates still to write off, in order: the Map state's input."""
    return list(
        WriteOffCandidate.objects.filter(run_id=run_pk, status=CandidateStatus.PENDING).order_by("pk").values_list("pk", flat=True)
    )


def writeoff_apply_chunk(*, run_pk: int, candidate_ids: list[int], actor: Actor) -> int:
    """Write off a chunk's pending candidates through the tenant's provider; safe to run twice."""
    run = JourneyRun.objects.filter(pk=run_pk).only("pk", "tenant_id", "phase").first()
    if run is None or run.phase != Phase.RUNNING:
        return 0  # a cancelled run applies nothing more
    config = WriteOffSettings.objects.filter(tenant_id=run.tenant_id).first()
    if config is not None and config.provider == Provider.ZUORA:
        done = _apply_remote(run=run, candidate_ids=candidate_ids, config=config, actor=actor)
    else:
        done = _apply_local(run=run, candidate_ids=candidate_ids, actor=actor)
    return done


def _apply_local(*, run: JourneyRun, candidate_ids: list[int], actor: Actor) -> int:
    from writeoffs.providers import local

    try:
        with audited(actor=actor, reason="daily write-off"):
            return local.apply_chunk(tenant_id=run.tenant_id, run_pk=run.pk, candidate_ids=candidate_ids)
    except Exception as exc:  # noqa: BLE001 - isolate the invoice that broke the chunk
        log.warning("writeoff_chunk.failed", run=run.pk, candidates=len(candidate_ids), error=repr(exc))
        if len(candidate_ids) == 1:
            _fail(candidate_ids[0], error=f"{type(exc).__name__}: {exc}"[:2000], actor=actor)
            return 1
        return sum(_apply_local(run=run, candidate_ids=[pk], actor=actor) for pk in candidate_ids)


def _fail(candidate_id: int, *, error: str, actor: Actor) -> None:
    with audited(actor=actor, reason="daily write-off failed"):
        WriteOffCandidate.objects.filter(pk=candidate_id, status=CandidateStatus.PENDING).update(
            status=CandidateStatus.FAILED, error=error, processed_at=timezone.now()
        )


def zuora_client(config: WriteOffSettings):
    """One client per credentials and worker process: its per-thread sessions keep their connections."""
    return _zuora_client(config.zuora_base_url, config.zuora_client_id, config.zuora_client_secret)


@functools.lru_cache(maxsize=64)
def _zuora_client(base_url: str, client_id: str, client_secret: str):
    from writeoffs.providers.zuora import ZuoraClient

    return ZuoraClient(base_url=base_url, client_id=client_id, client_secret=client_secret)


def _apply_remote(*, run: JourneyRun, candidate_ids: list[int], config: WriteOffSettings, actor: Actor) -> int:
    client = zuora_client(config)
    done = 0
    for candidate_id in candidate_ids:
        # the row lock keeps a duplicate task off this invoice while the calls are in flight
        with audited(actor=actor, reason="daily write-off (zuora)"):
            candidate = (
                WriteOffCandidate.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("invoice")
                .filter(pk=candidate_id, run_id=run.pk, tenant_id=run.tenant_id, status=CandidateStatus.PENDING)
                .first()
            )
            if candidate is None:
                continue
            try:
                result = client.write_off_invoice(
                    invoice_key=candidate.invoice.number or str(candidate.invoice_id),
                    business_date=candidate.business_date,
                    reason_code=config.reason_code,
                    comment=f"Ledgerflow daily write-off: cancelled subscription ({candidate.source})",
                )
            except WriteOffFailed as exc:
                candidate.status, candidate.error = CandidateStatus.FAILED, exc.detail[:2000]
            except Exception as exc:  # noqa: BLE001 - one invoice's surprise never stops the others
                candidate.status, candidate.error = CandidateStatus.FAILED, f"{type(exc).__name__}: {exc}"[:2000]
            else:
                candidate.status = CandidateStatus.SKIPPED if result.status == "skipped" else CandidateStatus.SUCCEEDED
                candidate.written_off_amount, candidate.adjustments = result.written_off, result.adjustments
                candidate.error = "balance already zero" if result.status == "skipped" else ""
            candidate.processed_at = timezone.now()
            candidate.save(update_fields=["status", "error", "written_off_amount", "adjustments", "processed_at"])
            done += 1
    return done


# --- report --------------------------------------------------------------------------------------
def writeoff_report(*, run_pk: int, tenant_id: int) -> dict:
    """The run's outcome and its CSV of failures (in the caller's transaction); notify after commit."""
    candidates = WriteOffCandidate.objects.filter(run_id=run_pk)
    # a chunk that failed on every attempt left its candidates pending: each is reported failed
    candidates.filter(status=CandidateStatus.PENDING).update(
        status=CandidateStatus.FAILED,
        error="Not written off: its chunk failed on every attempt (the run's chunk rows in the admin hold the error).",
        processed_at=timezone.now(),
    )
    counts = {s: 0 for s in CandidateStatus.values}
    counts.update({row["status"]: row["n"] for row in candidates.values("status").annotate(n=Count("id")).order_by()})
    totals = {
        row["currency"]: str(row["total"])
        for row in candidates.filter(status=CandidateStatus.SUCCEEDED)
        .values("currency")
        .annotate(total=Sum("written_off_amount", output_field=_MONEY))
        .order_by("currency")
    }
    failed_rows = list(
        candidates.filter(status=CandidateStatus.FAILED)
        .order_by("pk")
        .values("invoice_id", "invoice__number", "invoice__customer__name", "currency", "balance", "source", "error")
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["invoice_id", "invoice_number", "customer", "currency", "balance", "source", "error"])
    for row in failed_rows:
        writer.writerow([row["invoice_id"], row["invoice__number"], row["invoice__customer__name"], row["currency"], row["balance"], row["source"], row["error"]])
    report, created = WriteOffReport.objects.get_or_create(
        run_id=run_pk, defaults={"tenant_id": tenant_id, "failed_count": len(failed_rows), "csv": buffer.getvalue()}
    )
    if created and report.failed_count:
        from writeoffs.tasks import notify_failures

        transaction.on_commit(lambda: notify_failures.delay(report.pk))
    outcome = {
        "counts": {"candidates": sum(counts.values()), **counts},
        "writtenOffByCurrency": totals,
        "failed": [{"invoiceId": r["invoice_id"], "invoiceNumber": r["invoice__number"], "error": r["error"]} for r in failed_rows[:OUTCOME_FAILED_LIMIT]],
        "reportUrl": report_url(run_pk=run_pk) if failed_rows else None,
    }
    log.info("writeoff_run.reported", run=run_pk, tenant=tenant_id, **{k: v for k, v in counts.items()})
    return outcome


def report_url(*, run_pk: int) -> str:
    journey_id = JourneyRun.objects.filter(pk=run_pk).values_list("journey_id", flat=True).first()
    return f"/api/v1/write-off-runs/{journey_id}/report.csv"


def writeoff_discard(*, run_pk: int) -> int:
    """A rejected run's candidates become skipped: nothing of it will be applied."""
    return WriteOffCandidate.objects.filter(run_id=run_pk, status=CandidateStatus.PENDING).update(
        status=CandidateStatus.SKIPPED, error="run rejected", processed_at=timezone.now()
    )


# --- Notifications -------------------------------------------------------------------------------
SIGNATURE_HEADER = "Ledgerflow-Signature"


def webhook_signature(*, secret: str, body: bytes, timestamp: int) -> str:
    """`t=…,v1=…`: HMAC-SHA256 over "{t}.{body}"; receivers reject old timestamps to stop replays."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def writeoff_notify_failures(*, report_id: int, actor: Actor) -> dict:
    """Tell the tenant's finance contacts (email) and webhook (if set) once each about failures.

    A webhook that fails raises (the task retries it); the email is not sent again.
    """
    sent = {"email": False, "webhook": False}
    with audited(actor=actor, reason="write-off failures notified"):
        report = WriteOffReport.objects.select_for_update().select_related("run", "tenant").get(pk=report_id)
        config = WriteOffSettings.objects.filter(tenant_id=report.tenant_id).first()
        if report.failed_count == 0 or config is None:
            return sent
        link = report_url(run_pk=report.run_id)
        business_date = report.run.context.get("businessDate", "")
        if report.emailed_at is None and config.finance_email_list:
            send_mail(
                subject=f"[{report.tenant.name}] Write-off {business_date}: {report.failed_count} invoice(s) not written off",
                message=(
                    f"The daily write-off run {report.run.journey_id} of {business_date} could not write off "
                    f"{report.failed_count} invoice(s).\n\nThe report: {link}\n\n{report.csv}"
                ),
                from_email=None,
                recipient_list=config.finance_email_list,
            )
            report.emailed_at = timezone.now()
            report.save(update_fields=["emailed_at"])
            sent["email"] = True
    if config.webhook_url and report.webhook_delivered_at is None:
        body = json.dumps(
            {
                "type": "writeoff.failures",
                "tenant": report.tenant.slug,
                "journeyId": report.run.journey_id,
                "businessDate": business_date,
                "failedCount": report.failed_count,
                "reportUrl": link,
            },
            separators=(",", ":"),
        ).encode()
        signature = webhook_signature(secret=config.webhook_secret, body=body, timestamp=int(time.time()))
        response = requests.post(
            config.webhook_url,
            data=body,
            headers={"Content-Type": "application/json", SIGNATURE_HEADER: signature},
            timeout=(3.05, 10),
        )
        response.raise_for_status()
        with audited(actor=actor, reason="write-off webhook delivered"):
            WriteOffReport.objects.filter(pk=report_id, webhook_delivered_at__isnull=True).update(webhook_delivered_at=timezone.now())
        sent["webhook"] = True
    log.info("writeoff_run.notified", report=report_id, **sent)
    return sent



# --- Settings ------------------------------------------------------------------------------------
SECRET_FIELDS = ("zuora_client_secret", "webhook_secret")


def writeoff_settings_save(*, tenant: Tenant, actor: Actor, **fields) -> WriteOffSettings:
    """Create or change a tenant's write-off settings; a blank secret keeps the stored one."""
    with audited(actor=actor, reason="write-off settings changed"):
        config, _ = WriteOffSettings.objects.select_for_update().get_or_create(tenant=tenant)
        for name, value in fields.items():
            if name in SECRET_FIELDS and not value:
                continue
            if name in SECRET_FIELDS and value != getattr(config, name):
                config.secrets_changed_at = timezone.now()
            setattr(config, name, value)
        if config.provider == Provider.ZUORA and not (config.zuora_base_url and config.zuora_client_id and config.zuora_client_secret):
            from core.errors import ValidationFailed

            raise ValidationFailed("Zuora needs a base URL, a client id and a client secret.", field="provider")
        config.save()
    return config
