"""Benchmark: a full daily-consolidation run for 10,000 enabled customers × 30 invoices each.

    .venv/bin/python bench/consolidation_bench.py [--customers 10000] [--invoices 30]

Uses its own database (ledgerflow_bench_cons, created and migrated if missing) and Redis database
11. Seeds once with set-based SQL (audit triggers off during seeding only), then runs the journey's
steps in a child process — selectCustomers, buildDrafts, decideApproval (policy "never"), issue —
and prints customers/s, total seconds and the child's peak RSS. Emails (one PDF each) are sent
afterwards by the io queue; their cost per invoice is measured separately on a sample.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ledgerflow_bench_cons")
os.environ["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")

TENANT_SLUG = "bench-consolidation"
RUN_AT = "2026-01-25T01:00:00+00:00"  # Sunday: weekly periods from Monday end today


def _setup_django() -> None:
    import django

    from operations.setup_services import database_ensure

    django.setup()
    import logging

    logging.disable(logging.INFO)  # the per-invoice info lines would dominate the output
    database_ensure()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def seed(customers: int, invoices: int) -> None:
    from django.db import connection, transaction

    from journeys.models import ApprovalPolicy
    from tenancy.models import Tenant

    tenant, _ = Tenant.objects.get_or_create(slug=TENANT_SLUG, defaults={"name": "Bench"})
    ApprovalPolicy.objects.update_or_create(tenant=tenant, journey_name="daily-consolidation", defaults={"mode": "never"})
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM billing_customer WHERE tenant_id = %s", [tenant.pk])
        if cursor.fetchone()[0] == customers:
            cursor.execute("SELECT count(*) FROM invoicing_invoice WHERE tenant_id = %s", [tenant.pk])
            if cursor.fetchone()[0] == customers * invoices:
                return
    print(f"seeding {customers} customers × {invoices} invoices …", flush=True)
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        # seeding only: no audit triggers, no FK checks (the data is generated consistent)
        cursor.execute("SET LOCAL session_replication_role = replica")
        for table in ("consolidation_consolidatedinvoiceline", "consolidation_consolidatedinvoice",
                      "consolidation_customerbillingperiod"):
            cursor.execute(f"DELETE FROM {table} WHERE tenant_id = %s", [tenant.pk])  # noqa: S608
        cursor.execute("DELETE FROM journeys_journeystep WHERE run_id IN (SELECT id FROM journeys_journeyrun WHERE tenant_id = %s)", [tenant.pk])
        cursor.execute("DELETE FROM journeys_journeyrun WHERE tenant_id = %s", [tenant.pk])
        cursor.execute("DELETE FROM billing_charge WHERE tenant_id = %s", [tenant.pk])
        cursor.execute("DELETE FROM invoicing_invoice WHERE tenant_id = %s", [tenant.pk])
        cursor.execute("DELETE FROM billing_customer WHERE tenant_id = %s", [tenant.pk])
        cursor.execute(
            "INSERT INTO billing_customer (tenant_id, external_ref, name, email, currency, address_line1, address_line2,"
            " city, postal_code, country, is_active, created_at, updated_at) "
            "SELECT %s, 'B-' || g, 'Airline ' || g, 'ap' || g || '@airline.example', 'EUR', '', '', '', '', 'DE', true, now(), now() "
            "FROM generate_series(1, %s) g",
            [tenant.pk, customers],
        )
        cursor.execute(
            "INSERT INTO consolidation_customerbillingperiod (tenant_id, customer_id, enabled, period_type, start_day, kyc_status,"
            " enabled_since, updated_at) SELECT tenant_id, id, true, 'WEEKLY', 1, 'APPROVED', '2026-01-01', now() "
            "FROM billing_customer WHERE tenant_id = %s",
            [tenant.pk],
        )
        cursor.execute(
            "INSERT INTO invoicing_invoice (tenant_id, customer_id, number, currency, status, issue_date, due_date, period_start,"
            " period_end, subtotal, tax_total, total, amount_paid, amount_credited, balance, memo, created_at, updated_at) "
            "SELECT c.tenant_id, c.id, 'INV-2026-' || c.id || '-' || k, 'EUR', 'payment_due', date '2026-01-19' + (k %% 7),"
            " date '2026-02-18', NULL, NULL, 100 + k, 0, 100 + k, 0, 0, 100 + k, '', now(), now() "
            "FROM billing_customer c CROSS JOIN generate_series(1, %s) k WHERE c.tenant_id = %s",
            [invoices, tenant.pk],
        )
        cursor.execute(
            "INSERT INTO billing_charge (tenant_id, customer_id, description, quantity, unit_amount, currency, tax_rate,"
            " occurred_at, details, invoice_id, created_at) "
            "SELECT i.tenant_id, i.customer_id, 'Route charge', 1, i.total, 'EUR', NULL, i.issue_date::timestamptz,"
            " jsonb_build_object('aircraft', 'D-A' || (i.id %% 50), 'route', 'EDDF-LFPG',"
            "  'firs', jsonb_build_array('EDGG', CASE WHEN i.id %% 3 = 0 THEN 'LOVV' ELSE 'LFFF' END),"
            "  'countries', jsonb_build_array('DE', 'FR')), i.id, now() "
            "FROM invoicing_invoice i WHERE i.tenant_id = %s",
            [tenant.pk],
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(f"seeded in {time.perf_counter() - started:.1f} s", flush=True)


def reset() -> None:
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("SELECT id FROM billing_tenant WHERE slug = %s", [TENANT_SLUG])
        tenant_id = cursor.fetchone()[0]
        cursor.execute("DELETE FROM consolidation_consolidatedinvoiceline WHERE tenant_id = %s", [tenant_id])
        cursor.execute("DELETE FROM consolidation_consolidatedinvoice WHERE tenant_id = %s", [tenant_id])
        cursor.execute("DELETE FROM consolidation_consolidationnumbersequence WHERE tenant_id = %s", [tenant_id])
        cursor.execute("DELETE FROM journeys_journeystep WHERE run_id IN (SELECT id FROM journeys_journeyrun WHERE tenant_id = %s)", [tenant_id])
        cursor.execute("DELETE FROM journeys_journeyrun WHERE tenant_id = %s", [tenant_id])
        cursor.execute("DELETE FROM audit_event WHERE tenant_id = %s", [tenant_id])
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE consolidation_consolidatedinvoice")
        cursor.execute("VACUUM ANALYZE consolidation_consolidatedinvoiceline")


def run_once() -> None:
    """The measured part (child process): one journey run from start to SUCCEEDED."""
    from datetime import datetime

    from consolidation import services
    from consolidation.models import ConsolidatedInvoice, ConsolidatedInvoiceLine
    from core.actors import Actor
    from journeys import engine
    from tenancy.models import Tenant

    actor = Actor.system("bench")
    tenant = Tenant.objects.get(slug=TENANT_SLUG)
    timings = {}
    started = time.perf_counter()
    run = services.consolidation_trigger(tenant=tenant, actor=actor, now=datetime.fromisoformat(RUN_AT))
    run.refresh_from_db()
    while run.phase == "RUNNING" and run.waiting_for == "task":
        state = run.current_state
        t0 = time.perf_counter()
        result = engine.execute_step(run_pk=run.pk, state_id=state, actor=actor)
        timings[state] = time.perf_counter() - t0
        if result.status != "done":
            raise SystemExit(f"step {state}: {result}")
        run.refresh_from_db()
    total = time.perf_counter() - started
    customers = len(run.context.get("customerIds", []))
    made = ConsolidatedInvoice.objects.filter(journey_run=run).count()
    lines = ConsolidatedInvoiceLine.objects.filter(consolidated_invoice__journey_run=run).count()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # Sending runs as the run's Map chunks on a worker: the bench times the steps up to it.
    where = (run.output or {}).get("status") or f"at {run.current_state} ({run.waiting_for})"
    print(f"run {run.phase} {where}: {customers} customers, {made} consolidated invoices, {lines} lines")
    print("steps: " + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
    print(f"total {total:.2f} s, {customers / total:,.0f} customers/s, {lines / total:,.0f} source invoices/s")
    print(f"peak RSS of the run process {peak_mb:.0f} MB (PostgreSQL's own memory not included)")

    # email cost: PDF + locmem send for a sample
    from django.core import mail  # noqa: F401 - locmem backend under settings_test

    sample = list(ConsolidatedInvoice.objects.filter(journey_run=run).order_by("id").values_list("id", flat=True)[:200])
    t0 = time.perf_counter()
    for pk in sample:
        services.consolidated_invoice_send(consolidated_invoice_id=pk, actor=actor)
    per = (time.perf_counter() - t0) / max(len(sample), 1)
    print(f"email with PDF: {per * 1000:.1f} ms per consolidated invoice (sample {len(sample)}), "
          f"≈ {per * made:.0f} s of io-queue work for all, after the run")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--invoices", type=int, default=30)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    _setup_django()
    if args.child:
        run_once()
        return
    seed(args.customers, args.invoices)
    reset()
    subprocess.run([sys.executable, __file__, "--child"], check=True)  # noqa: S603
    from config.celery_app import app

    app.control.purge()  # the run's follow-up messages (steps already done, emails) in Redis db 11


if __name__ == "__main__":
    main()
