"""Reconciliation benchmark: import an N-line CAMT.053 statement and reconcile it against N open
invoices and N completed payments, on a database of its own (created and migrated if missing).

    .venv/bin/python bench/reconciliation_bench.py            # 100,000 lines, and 20,000 for memory
    .venv/bin/python bench/reconciliation_bench.py --lines 5000 --single

Prints lines/s for the import, matches/s for the engine, total seconds and the peak RSS of the
process (each size runs in its own process, so peaks compare: flat memory means the 100,000-line
peak is close to the 20,000-line one).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Overridable so parallel checkouts do not share (and truncate) one benchmark database.
BENCH_DATABASE = os.environ.get("BENCH_DATABASE", "ledgerflow_bench_recon")


def _setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ledgerflow").rsplit("/", 1)[0]
    os.environ["DATABASE_URL"] = f"{base}/{BENCH_DATABASE}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DEBUG", "true")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    from core.setup_services import database_ensure

    database_ensure()
    call_command("migrate", verbosity=0)


def write_camt(path: Path, lines: int, iban: str) -> None:
    """A CAMT.053 file with `lines` credits, written as a stream (the file never sits in memory)."""
    with path.open("w", encoding="utf-8") as out:
        out.write(
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>'
            "<GrpHdr><MsgId>BENCH</MsgId><CreDtTm>2026-03-03T06:00:00Z</CreDtTm></GrpHdr><Stmt>"
            f"<Id>BENCH-{lines}</Id><Acct><Id><IBAN>{iban}</IBAN></Id><Ccy>EUR</Ccy></Acct>\n"
        )
        for n in range(1, lines + 1):
            out.write(
                f'<Ntry><NtryRef>{n}</NtryRef><Amt Ccy="EUR">{100 + n % 900}.{n % 100:02d}</Amt>'
                "<CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>"
                "<BookgDt><Dt>2026-03-02</Dt></BookgDt><ValDt><Dt>2026-03-02</Dt></ValDt>"
                f"<AcctSvcrRef>BANK{n:09d}</AcctSvcrRef><NtryDtls><TxDtls>"
                f"<Refs><EndToEndId>pi_bench_{n}</EndToEndId></Refs>"
                f"<RltdPties><Dbtr><Pty><Nm>Customer {n % 1000}</Nm></Pty></Dbtr>"
                "<DbtrAcct><Id><IBAN>DE02120300000000202051</IBAN></Id></DbtrAcct></RltdPties>"
                f"<RmtInf><Ustrd>Invoice BENCH-2026-{n:06d} route charges</Ustrd></RmtInf>"
                "</TxDtls></NtryDtls></Ntry>\n"
            )
        out.write("</Stmt></BkToCstmrStmt></Document>\n")


def _seed(lines: int):
    """A fresh tenant with 1,000 customers, `lines` issued invoices and completed payments (set-based)."""
    from django.db import connection

    from billing.models import Customer, Tenant
    from reconciliation.models import BankAccount

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE billing_tenant CASCADE")
    tenant = Tenant.objects.create(name="Bench", slug="bench", invoice_number_prefix="BENCH")
    Customer.objects.bulk_create(
        [Customer(tenant=tenant, name=f"Customer {n}", currency="EUR") for n in range(1000)]
    )
    first_customer = Customer.objects.filter(tenant=tenant).order_by("id").first().pk
    account = BankAccount.objects.create(
        tenant=tenant, name="Ops", iban="DE89370400440532013000", currency="EUR"
    )
    amount = "((100 + n %% 900) + (n %% 100) / 100.0)::numeric(22, 4)"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO invoicing_invoice (tenant_id, customer_id, number, currency, status, issue_date, due_date,
                subtotal, tax_total, total, amount_paid, amount_credited, balance, memo, created_at, updated_at)
            SELECT %(t)s, %(c)s + n %% 1000, 'BENCH-2026-' || lpad(n::text, 6, '0'), 'EUR', 'payment_due',
                   '2026-02-01', '2026-03-31', {amount}, 0, {amount}, 0, 0, {amount}, '', now(), now()
            FROM generate_series(1, %(n)s) n
            """,  # noqa: S608 - the amount expression is this script's constant
            {"t": tenant.pk, "c": first_customer, "n": lines},
        )
        cursor.execute(
            """
            INSERT INTO billing_payment (tenant_id, customer_id, invoice_id, method, amount, currency, status,
                rail_transaction_id, reference, failure_reason, initiated_at, processing_at, completed_at,
                updated_at)
            SELECT %(t)s, i.customer_id, i.id, 'gateway', i.total, 'EUR', 'completed',
                   'pi_bench_' || n, '', '', now(), now(), now(), now()
            FROM generate_series(1, %(n)s) n
            JOIN invoicing_invoice i ON i.tenant_id = %(t)s AND i.number = 'BENCH-2026-' || lpad(n::text, 6, '0')
            """,
            {"t": tenant.pk, "n": lines},
        )
        cursor.execute("ANALYZE invoicing_invoice; ANALYZE billing_payment")
    return tenant, account


class SlowStatements:
    """Records each SQL statement slower than `threshold` seconds (where the time goes)."""

    def __init__(self, threshold: float = 0.3):
        self.threshold, self.found = threshold, []

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            took = time.perf_counter() - started
            if took > self.threshold:
                self.found.append((took, " ".join(str(sql).split())[:90]))


def run_once(lines: int) -> dict:
    _setup_django()
    from django.db import connection

    from audit.actors import Actor
    from reconciliation import services

    tenant, account = _seed(lines)
    actor = Actor.system("bench")
    slow = SlowStatements()
    connection.execute_wrappers.append(slow)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "statement.xml"
        write_camt(path, lines, account.iban)
        size = path.stat().st_size
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        with path.open("rb") as stream:
            imported = services.statement_import(
                tenant=tenant, actor=actor, bank_account=account, stream=stream, run_matching=False
            )
        import_seconds = time.perf_counter() - started
    started = time.perf_counter()
    result = services.reconciliation_run(tenant_id=tenant.pk, actor=actor)
    match_seconds = time.perf_counter() - started
    again = services.reconciliation_run(tenant_id=tenant.pk, actor=actor)
    from invoicing.models import Invoice

    paid = Invoice.objects.filter(tenant=tenant, status="paid").count()
    return {
        "lines": lines,
        "file_mb": size / 1e6,
        "imported": imported.new_entry_count,
        "import_s": import_seconds,
        "lines_per_s": lines / import_seconds,
        "reconciled": result.reconciled,
        "paid": paid,
        "match_s": match_seconds,
        "matches_per_s": result.reconciled / match_seconds if match_seconds else 0,
        "total_s": import_seconds + match_seconds,
        "second_run_reconciled": again.reconciled,
        "rss_before_mb": rss_before / 1024,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "slow": slow.found,
    }


def _report(r: dict) -> None:
    print(
        f"{r['lines']:>7} lines ({r['file_mb']:.1f} MB CAMT.053): "
        f"import {r['import_s']:.2f} s = {r['lines_per_s']:,.0f} lines/s; "
        f"reconcile {r['match_s']:.2f} s = {r['matches_per_s']:,.0f} matches/s "
        f"({r['reconciled']} reconciled, {r['paid']} invoices paid, second run {r['second_run_reconciled']}); "
        f"total {r['total_s']:.2f} s; peak RSS {r['peak_rss_mb']:.0f} MB (after Django setup and seeding: "
        f"{r['rss_before_mb']:.0f} MB)"
    )
    for took, sql in r["slow"]:
        print(f"    {took:6.2f} s  {sql}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--single", action="store_true", help="one size, in this process")
    args = parser.parse_args()
    if args.single:
        result = run_once(args.lines)
        _report(result)
        return
    # Each size in a fresh process, so each peak RSS is that size's own.
    for lines in (args.lines // 5, args.lines):
        subprocess.run(  # noqa: S603 - our own script
            [sys.executable, __file__, "--lines", str(lines), "--single"], check=True
        )


if __name__ == "__main__":
    main()
