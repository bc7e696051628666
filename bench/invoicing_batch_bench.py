"""Benchmark: drafting and validating a monthly batch (issue: 100,000 invoices, ≥ 5,000 invoices/s,
memory flat as the batch grows), and the time from an approval POST to the first invoice sent.

    .venv/bin/python bench/invoicing_batch_bench.py [--sizes 10000,50000,100000] [--no-approval]

Uses its own database (ledgerflow_bench_batch, created and migrated) and Redis database 7.
Each customer has one subscription and two unbilled charges, all taxed: an invoice of 3 items and
3 tax items. Seeding uses COPY with triggers off (not measured).
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ledgerflow_bench_batch")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/7")
os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("EMAIL_URL", "dummymail://")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from core.actors import Actor  # noqa: E402
from invoicing import batch  # noqa: E402
from journeys.models import JourneyRun  # noqa: E402
from operations.setup_services import database_ensure  # noqa: E402
from tenancy.models import Tenant  # noqa: E402

ACTOR = Actor.system("bench")
PERIOD = batch.BillingPeriod(start=date(2026, 10, 1), end=date(2026, 10, 31))


def _copy(table: str, columns: str, rows) -> None:
    buffer = io.StringIO()
    for row in rows:
        buffer.write("\t".join(row) + "\n")
    buffer.seek(0)
    with connection.cursor() as cursor, cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        while chunk := buffer.read(1 << 20):
            copy.write(chunk)


def seed(size: int, label: str) -> Tenant:
    """A tenant with `size` customers, each with a subscription and two unbilled charges."""
    tenant = Tenant.objects.create(name=f"Bench {label}", slug=f"bench-{label}-{time.time_ns()}", default_currency="EUR")
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")  # no audit triggers while seeding
        cursor.execute("SELECT coalesce(max(id), 0) FROM billing_customer")
        base = cursor.fetchone()[0]
    t = str(tenant.pk)
    _copy(
        "billing_customer",
        "id, tenant_id, external_ref, name, email, currency, address_line1, address_line2, city, postal_code, country, is_active, created_at, updated_at",
        ((str(base + i), t, f"B{base + i}", f"Customer {i}", f"c{i}@bench.example", "EUR", "", "", "", "", "DE", "t", "now", "now") for i in range(1, size + 1)),
    )
    _copy(
        "billing_subscription",
        "tenant_id, customer_id, plan_name, unit_price, quantity, currency, billing_cadence, status, started_on, tax_rate, created_at, updated_at",
        ((t, str(base + i), "Pro", "99.00", "1", "EUR", "monthly", "active", "2026-01-01", "0.19", "now", "now") for i in range(1, size + 1)),
    )
    _copy(
        "billing_charge",
        "tenant_id, customer_id, description, quantity, unit_amount, currency, tax_rate, occurred_at, details, created_at",
        (
            (t, str(base + i), f"Route charge {k}", "1", f"{10 + k}.50", "EUR", "0.19", f"2026-10-{10 + k}T12:00:00+00", '{"firs": ["EDGG"]}', "now")
            for i in range(1, size + 1)
            for k in (1, 2)
        ),
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT setval('billing_customer_id_seq', (SELECT max(id) FROM billing_customer))")
        cursor.execute("SET session_replication_role = origin")
        cursor.execute("ANALYZE billing_customer; ANALYZE billing_subscription; ANALYZE billing_charge")
    return tenant


def new_run(tenant: Tenant, state: str = "draftInvoices") -> JourneyRun:
    return JourneyRun.objects.create(
        journey_name="monthly-invoicing-batch", tenant=tenant, current_state=state, waiting_for="task",
        context={"batchId": "bench", "billingPeriodStart": PERIOD.start.isoformat(), "billingPeriodEnd": PERIOD.end.isoformat()},
    )


def measure_draft_and_validate(size: int) -> dict:
    tenant = seed(size, str(size))
    run = new_run(tenant)
    tracemalloc.start()
    started = time.perf_counter()
    summary = batch.batch_draft(tenant=tenant, batch_id="bench", run_pk=run.pk, period=PERIOD, actor=ACTOR)
    drafted = time.perf_counter()
    validation = batch.batch_validate(run_pk=run.pk)
    finished = time.perf_counter()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert summary.invoice_count == size, summary
    assert validation["ok"], validation["countsByKind"]
    total = finished - started
    return {
        "invoices": size,
        "draft_s": drafted - started,
        "validate_s": finished - drafted,
        "total_s": total,
        "per_s": size / total,
        "py_peak_mb": peak / 2**20,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def measure_approval_to_first_send(size: int) -> float:
    """Seconds from the approval POST (over the API) to the first invoice sent by a real worker."""
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    from invoicing.models import Invoice
    from journeys.models import JourneyRun as Run
    from tenancy.models import Membership
    from tenancy.roles import Role

    tenant = seed(size, f"approve{size}")
    preparer = _user(f"prep-{tenant.slug}", tenant)
    approver = _user(f"appr-{tenant.slug}", tenant, roles=[Role.FINANCE_APPROVER])
    run = new_run(tenant)
    run.started_by = preparer
    run.save()
    batch.batch_draft(tenant=tenant, batch_id="bench", run_pk=run.pk, period=PERIOD, actor=ACTOR)
    run.context["batch"] = batch.batch_summary(run_pk=run.pk).as_context()
    Run.objects.filter(pk=run.pk).update(current_state="waitForFinanceApproval", waiting_for="approval", context=run.context)
    assert Membership.objects.filter(user=approver, tenant=tenant).exists()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=approver).key}")

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    worker = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "default,io", "-c", "2", "-l", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        time.sleep(4)  # the worker connects and is ready
        posted = time.perf_counter()
        posted_at = datetime.now(tz=ZoneInfo("UTC"))
        response = client.post(f"/api/v1/journeys/{run.journey_id}/steps/approveInvoiceBatch", {"decision": "APPROVED"}, format="json")
        assert response.status_code == 200, response.status_code
        deadline = posted + 120
        while time.perf_counter() < deadline:
            first = Invoice.objects.filter(batch_run=run, sent_at__isnull=False).order_by("sent_at").first()
            if first is not None:
                return (first.sent_at - posted_at).total_seconds()
            time.sleep(0.005)
        raise RuntimeError("no invoice was sent within 120 s")
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(30)


def _user(username: str, tenant: Tenant, roles=("finance-operator",)):
    from django.contrib.auth import get_user_model

    from tenancy.services import membership_create

    user = get_user_model().objects.create(username=username)
    membership_create(tenant=tenant, user=user, roles=roles, actor=ACTOR)
    return user


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,50000,100000")
    parser.add_argument("--no-approval", action="store_true")
    args = parser.parse_args()
    database_ensure()
    call_command("migrate", verbosity=0)

    print(f"{'invoices':>9} {'draft s':>8} {'validate s':>10} {'total s':>8} {'invoices/s':>11} {'py peak MB':>10} {'max RSS MB':>10}")
    for size in (int(s) for s in args.sizes.split(",")):
        r = measure_draft_and_validate(size)
        print(
            f"{r['invoices']:>9} {r['draft_s']:>8.2f} {r['validate_s']:>10.2f} {r['total_s']:>8.2f} {r['per_s']:>11.0f}"
            f" {r['py_peak_mb']:>10.2f} {r['rss_mb']:>10.0f}"
        )
    print("(each invoice: 1 subscription line + 2 charge lines, 3 tax items; audit events included)")
    if not args.no_approval:
        latency = measure_approval_to_first_send(1000)
        print(f"approval POST → first invoice sent (1,000-invoice batch, real worker): {latency * 1000:.0f} ms")


if __name__ == "__main__":
    main()
