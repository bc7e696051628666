"""Benchmark of the daily write-off's applyWriteOffs fan-out (see the closing note of the feature).

    .venv/bin/python bench/writeoff_bench.py [--local 10000] [--remote 2000] [--concurrency 8,16,32]

(a) local ledger: N candidate invoices (3 items + 3 tax items each, partly paid so each needs 2
    adjustments), a prefork worker with 2 processes on the io queue; invoices/s from the first
    dispatch to the last candidate processed, as recorded in PostgreSQL.
(b) Zuora: the same invoices against the local fake API in its own process with 50 ms latency per
    call, a threads-pool worker at each concurrency; compared with the latency-bound ideal
    concurrency / (calls per invoice × latency).

Uses its own database (ledgerflow_bench_wo, created and migrated if missing) and Redis database 12.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ledgerflow_bench_wo")
os.environ["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
os.environ["CELERY_BROKER_URL"] = os.environ["REDIS_URL"]
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-ledgerflow-0123456789abcdefghijklmnop")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from billing.models import Customer, Subscription  # noqa: E402
from core.actors import Actor  # noqa: E402
from invoicing.models import Invoice  # noqa: E402
from journeys import engine  # noqa: E402
from journeys.models import ApprovalPolicy  # noqa: E402
from operations.setup_services import database_ensure  # noqa: E402
from tenancy.models import Tenant  # noqa: E402
from writeoffs.models import WriteOffCandidate, WriteOffSettings  # noqa: E402

ACTOR = Actor.system("bench")
DAY = date(2026, 3, 10)
LATENCY = 0.05
# per invoice: items 100, 50, 20 (+19 % tax), 100 paid: balance 102.30 → credit 100 + 2.30
ITEMS = [("100.00", "19.00"), ("50.00", "9.50"), ("20.00", "3.80")]


def seed(tenant: Tenant, n: int, prefix: str) -> None:
    """N overdue invoices of one customer's cancelled subscription, in set-based SQL."""
    customer = Customer.objects.create(tenant=tenant, name="Bench Airline", currency="EUR")
    sub = Subscription.objects.create(
        tenant=tenant, customer=customer, plan_name="Bench", unit_price=1, currency="EUR", started_on=date(2025, 1, 1),
        status="cancelled", cancelled_at=datetime(2026, 3, 8, 9, tzinfo=ZoneInfo("UTC")), cancellation_source="MMA",
    )
    Invoice.objects.bulk_create(
        [
            Invoice(
                tenant=tenant, customer=customer, number=f"{prefix}-{i}", currency="EUR", status="overdue",
                issue_date=date(2026, 1, 1), due_date=date(2026, 1, 31), subtotal=Decimal("170"), tax_total=Decimal("32.30"),
                total=Decimal("202.30"), amount_paid=Decimal("100"), balance=Decimal("102.30"),
            )
            for i in range(1, n + 1)
        ],
        batch_size=2000,
    )
    with connection.cursor() as c:
        for position, (amount, tax) in enumerate(ITEMS):
            c.execute(
                """WITH items AS (
                     INSERT INTO invoicing_invoiceitem (tenant_id, invoice_id, subscription_id, position, description, quantity,
                       unit_amount, amount, tax_rate, available_to_credit_amount, details)
                     SELECT %s, i.id, %s, %s, 'bench line', 1, %s, %s, 0.19, %s, '{}' FROM invoicing_invoice i WHERE i.tenant_id = %s
                     RETURNING id, invoice_id)
                   INSERT INTO invoicing_taxitem (tenant_id, invoice_id, invoice_item_id, name, rate, taxable_amount, amount,
                     available_to_credit_amount)
                   SELECT %s, invoice_id, id, 'VAT', 0.19, %s, %s, %s FROM items""",
                [tenant.pk, sub.pk, position, amount, amount, amount, tenant.pk, tenant.pk, amount, tax, tax],
            )


def new_tenant(label: str) -> Tenant:
    stamp = f"{label}-{time.time_ns()}"
    tenant = Tenant.objects.create(name=stamp, slug=stamp[:64], invoice_number_prefix="B")
    ApprovalPolicy.objects.create(tenant=tenant, journey_name="daily-write-off", mode="never")
    return tenant


def worker(pool: str, concurrency: int, extra_env: dict) -> subprocess.Popen:
    env = {**os.environ, **extra_env}
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "-P", pool, "-c", str(concurrency), "-Q", "default,io",
               "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "warning"]
    return subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL)  # noqa: S603 - our own argv


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def run_once(tenant: Tenant, n: int, timeout: float) -> float:
    """Start a run, let the worker apply it; invoices/s of the apply phase (from PostgreSQL)."""
    from django.db.models import Max

    # From the start: candidates are applied by the run's Map chunks (no per-candidate dispatch time).
    started_at = timezone.now()
    run, _ = engine.run_start(journey_name="daily-write-off", tenant=tenant, actor=ACTOR, context={"businessDate": DAY.isoformat()},
                              dedupe_key=DAY.isoformat())
    candidates = WriteOffCandidate.objects.filter(run=run)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if candidates.count() == n and not candidates.filter(status="pending").exists():
            break
        time.sleep(0.5)
    else:
        raise SystemExit(f"run {run.journey_id} did not finish in {timeout}s")
    marks = candidates.aggregate(last=Max("processed_at"))
    statuses = dict(candidates.values_list("status").annotate(n=django.db.models.Count("id")))
    assert statuses == {"succeeded": n}, statuses
    # finish the run as beat would
    engine.timers_fire_due(actor=ACTOR, now=timezone.now() + timedelta(minutes=1))
    return n / (marks["last"] - started_at).total_seconds()


def _fake_server(n: int, prefix: str, conn) -> None:
    from tests.writeoffs.fake_zuora import FakeZuora

    fake = FakeZuora(latency=LATENCY)
    for i in range(1, n + 1):
        fake.add_invoice(f"{prefix}-{i}", lines=ITEMS, balance="102.30")
    conn.send(fake.start())
    conn.recv()  # until told to report
    conn.send((len([c for c in fake.calls if c[1] != "/oauth/token"]), len(fake.adjustments)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--local", type=int, default=10_000)
    parser.add_argument("--remote", type=int, default=2_000)
    parser.add_argument("--concurrency", default="8,16,32")
    args = parser.parse_args()

    database_ensure()
    call_command("migrate", verbosity=0)
    from config.celery_app import app

    app.control.purge()
    print(f"cores: {os.cpu_count()}  load average: {os.getloadavg()}")

    if args.local:
        tenant = new_tenant("bench-local")
        t = time.monotonic()
        seed(tenant, args.local, f"L{tenant.pk}")
        print(f"(a) seeded {args.local} invoices (3 items + 3 tax items) in {time.monotonic() - t:.1f}s")
        w = worker("prefork", 2, {})
        try:
            rate = run_once(tenant, args.local, timeout=600)
        finally:
            stop(w)
        print(f"(a) local ledger, prefork -c 2: {rate:,.0f} invoices/s (2 adjustments each)")

    for concurrency in [int(c) for c in args.concurrency.split(",") if c] if args.remote else []:
        tenant = new_tenant(f"bench-zuora-{concurrency}")
        prefix = f"Z{tenant.pk}"
        seed(tenant, args.remote, prefix)
        parent, child = multiprocessing.Pipe()
        server = multiprocessing.Process(target=_fake_server, args=(args.remote, prefix, child), daemon=True)
        server.start()
        base_url = parent.recv()
        WriteOffSettings.objects.create(tenant=tenant, provider="zuora", zuora_base_url=base_url, zuora_client_id="bench", zuora_client_secret="s3cret")  # noqa: S106 - the fake's
        w = worker("threads", concurrency, {"WRITEOFF_REMOTE_CHUNK_SIZE": "2"})
        try:
            rate = run_once(tenant, args.remote, timeout=900)
        finally:
            stop(w)
        parent.send("report")
        calls, adjustments = parent.recv()
        server.terminate()
        per_invoice = calls / args.remote
        ideal = concurrency / (per_invoice * LATENCY)
        print(
            f"(b) zuora fake, 50 ms/call, threads -c {concurrency}: {rate:,.1f} invoices/s; "
            f"{per_invoice:.2f} calls/invoice → ideal {ideal:,.1f}/s; {rate / ideal:.0%} of ideal ({adjustments} adjustments)"
        )


if __name__ == "__main__":
    main()
