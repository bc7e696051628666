"""Reconciliation benchmark on a database of its own (created and migrated if missing).

    .venv/bin/python bench/reconciliation_bench.py                 # 100,000 transactions, and 20,000 for memory
    .venv/bin/python bench/reconciliation_bench.py --transactions 5000 --single

1. Import: a CAMT.053 of N transactions, booked as batch bookings of 1–50 transactions mixed with single
   ones, streamed (lxml iterparse) and bulk-inserted by statement_import, against PostgreSQL COPY of the
   same rows into the same table: the limit. Rounds alternate (import, COPY, import, COPY) in one run, so
   both see the same machine load.
2. Matching: the N entries against N open invoices, with a realistic mix: 60 % quote the invoice's RF
   creditor reference, 15 % the invoice number in free text, 10 % are one transfer paying two invoices
   listed in the text (multi-invoice, its payment named by end-to-end id), 10 % carry only amount and
   payer, 5 % quote the RF of an invoice that has no payment (missing-payment discrepancies).

Prints transactions/s, entries/s and the peak RSS (each size runs in its own process, so the peaks
compare: flat memory means the 100,000 peak is close to the 20,000 one) with the load average. The
matching run is called directly (the worker's task is a thin wrapper that calls this service).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Overridable so parallel checkouts do not share (and truncate) one benchmark database.
BENCH_DATABASE = os.environ.get("BENCH_DATABASE", "ledgerflow_bench_recon")
IBAN = "DE89370400440532013000"
PAYER_IBAN = "DE02120300000000202051"


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

    from operations.setup_services import database_ensure

    database_ensure()
    call_command("migrate", verbosity=0)


def _cents(n: int) -> int:
    """Invoice n's total in cents (the seed SQL computes the same): distinct per invoice, so amount +
    payer finds exactly one."""
    return 10_000 + n


def _category(n: int) -> str:
    bucket = n % 20
    if bucket < 12:
        return "rf"
    if bucket < 15:
        return "number"
    if bucket < 17:
        return "multi"  # n % 20 == 15 pays itself and n + 1
    if bucket < 19:
        return "payer"
    return "unpaid"


def _transactions(count: int):
    """(cents, transaction XML) of each transaction of the statement, in order."""
    from invoicing.models import creditor_reference

    for n in range(1, count + 1):
        category = _category(n)
        number = f"BENCH-2026-{n:06d}"
        e2e, name, text, rf = "NOTPROVIDED", f"Payer {n}", "", ""
        cents = _cents(n)
        if category in ("rf", "unpaid"):
            rf = creditor_reference(number)
        elif category == "number":
            text = f"Invoice {number} route charges"
        elif category == "multi":
            if n % 20 == 16:
                continue  # paid together with n - 1
            cents += _cents(n + 1)
            e2e, text = f"pi_multi_{n}", f"{number}, BENCH-2026-{n + 1:06d}"
        else:
            name = f"Customer {n % 1000}"
        strd = f"<Strd><CdtrRefInf><Ref>{rf}</Ref></CdtrRefInf></Strd>" if rf else ""
        yield (
            cents,
            f"<TxDtls><Refs><EndToEndId>{e2e}</EndToEndId></Refs>"
            f'<Amt Ccy="EUR">{cents // 100}.{cents % 100:02d}</Amt>'
            f"<RltdPties><Dbtr><Pty><Nm>{name}</Nm></Pty></Dbtr><DbtrAcct><Id><IBAN>{PAYER_IBAN}</IBAN></Id>"
            f"</DbtrAcct></RltdPties><RmtInf><Ustrd>{text}</Ustrd>{strd}</RmtInf></TxDtls>",
        )


def write_camt(path: Path, invoices: int) -> int:
    """A CAMT.053 paying `invoices` invoices, written as a stream; returns its transaction count."""
    rng = random.Random(20260302)  # noqa: S311 - a reproducible shape, not a secret
    transactions = _transactions(invoices)
    written = booking = 0
    with path.open("w", encoding="utf-8") as out:
        out.write(
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>'
            "<GrpHdr><MsgId>BENCH</MsgId><CreDtTm>2026-03-03T06:00:00Z</CreDtTm></GrpHdr><Stmt>"
            f"<Id>BENCH-{invoices}</Id><Acct><Id><IBAN>{IBAN}</IBAN></Id><Ccy>EUR</Ccy></Acct>\n"
        )
        while True:
            # half the bookings are single transfers, the others batches of 2–50
            size = 1 if rng.random() < 0.5 else rng.randint(2, 50)
            group = [t for _, t in zip(range(size), transactions, strict=False)]
            if not group:
                break
            booking += 1
            total = sum(cents for cents, _ in group)
            out.write(
                f'<Ntry><NtryRef>{booking}</NtryRef><Amt Ccy="EUR">{total // 100}.{total % 100:02d}</Amt>'
                "<CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>"
                "<BookgDt><Dt>2026-03-02</Dt></BookgDt><ValDt><Dt>2026-03-02</Dt></ValDt>"
                f"<AcctSvcrRef>BANK{booking:09d}</AcctSvcrRef><NtryDtls>"
                + "".join(t for _, t in group)
                + "</NtryDtls></Ntry>\n"
            )
            written += len(group)
        out.write("</Stmt></BkToCstmrStmt></Document>\n")
    return written


def _seed(invoices: int):
    """A fresh tenant with 1,000 customers, `invoices` issued invoices and their payments (set-based)."""
    from django.db import connection

    from billing.models import Customer
    from reconciliation.models import BankAccount
    from tenancy.models import Tenant

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE billing_tenant CASCADE")
    tenant = Tenant.objects.create(name="Bench", slug="bench", invoice_number_prefix="BENCH")
    Customer.objects.bulk_create(
        [Customer(tenant=tenant, name=f"Customer {n}", currency="EUR") for n in range(1000)]
    )
    first_customer = Customer.objects.filter(tenant=tenant).order_by("id").first().pk
    account = BankAccount.objects.create(tenant=tenant, name="Ops", iban=IBAN, currency="EUR")
    amount = "((10000 + n) / 100.0)::numeric(22, 4)"
    with connection.cursor() as cursor:
        # The second invoice of a multi-invoice pair belongs to the first one's customer.
        cursor.execute(
            f"""
            INSERT INTO invoicing_invoice (tenant_id, customer_id, number, currency, status, issue_date, due_date,
                subtotal, tax_total, total, amount_paid, amount_credited, balance, memo, created_at, updated_at)
            SELECT %(t)s, %(c)s + (CASE WHEN n %% 20 = 16 THEN n - 1 ELSE n END) %% 1000,
                   'BENCH-2026-' || lpad(n::text, 6, '0'), 'EUR', 'payment_due',
                   '2026-02-01', '2026-03-31', {amount}, 0, {amount}, 0, 0, {amount}, '', now(), now()
            FROM generate_series(1, %(n)s) n
            """,  # noqa: S608 - the amount expression is this script's constant
            {"t": tenant.pk, "c": first_customer, "n": invoices},
        )
        # Without statistics the planner scans the invoices once per payment below.
        cursor.execute("ANALYZE invoicing_invoice")
        # Bank transfers: a payment per invoice (none for the 5 % unpaid); a multi-invoice pair has one
        # payment for both, named by the transfer's end-to-end id.
        cursor.execute(
            """
            INSERT INTO billing_payment (tenant_id, customer_id, invoice_id, method, amount, currency, status,
                rail_transaction_id, reference, failure_reason, initiated_at, processing_at, completed_at,
                updated_at)
            SELECT %(t)s, i.customer_id, CASE WHEN n %% 20 = 15 THEN NULL ELSE i.id END, 'bank_transfer',
                   CASE WHEN n %% 20 = 15 THEN i.total + (SELECT j.total FROM invoicing_invoice j
                        WHERE j.tenant_id = %(t)s AND j.number = 'BENCH-2026-' || lpad((n + 1)::text, 6, '0'))
                        ELSE i.total END,
                   'EUR', 'completed', CASE WHEN n %% 20 = 15 THEN 'pi_multi_' || n ELSE '' END, '', '',
                   now(), now(), now(), now()
            FROM generate_series(1, %(n)s) n
            JOIN invoicing_invoice i ON i.tenant_id = %(t)s AND i.number = 'BENCH-2026-' || lpad(n::text, 6, '0')
            WHERE n %% 20 NOT IN (16, 19) AND NOT (n %% 20 = 15 AND n = %(n)s)
            """,
            {"t": tenant.pk, "n": invoices},
        )
        cursor.execute("ANALYZE invoicing_invoice; ANALYZE billing_payment; ANALYZE billing_customer")
    return tenant, account


class SlowStatements:
    """Records each SQL statement slower than `threshold` seconds (where the time goes)."""

    def __init__(self, threshold: float = 0.5):
        self.threshold, self.found = threshold, []

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            took = time.perf_counter() - started
            if took > self.threshold:
                self.found.append((took, " ".join(str(sql).split())[:90]))


def _copy_limit(tenant, account, rows: list[tuple]) -> float:
    """Seconds PostgreSQL takes to COPY the same rows into the entry table (no parsing, no dedup)."""
    from django.db import connection, transaction
    from django.utils import timezone

    from reconciliation.models import BankStatement

    with transaction.atomic():
        statement = BankStatement.objects.create(tenant=tenant, bank_account=account, format="camt053")
        now = timezone.now()
        columns = (
            "tenant_id, bank_account_id, statement_id, booking_date, value_date, amount, currency, "
            "bank_transaction_id, counterparty_name, counterparty_iban, reference, remittance_text, "
            "end_to_end_id, creditor_reference, kind, status, match_status, auto_match, dedup_key, created_at"
        )
        started = time.perf_counter()
        with (
            connection.cursor() as cursor,
            cursor.copy(f"COPY reconciliation_bankentry ({columns}) FROM STDIN") as copy,
        ):
            for n, row in enumerate(rows):
                copy.write_row(
                    (
                        tenant.pk,
                        account.pk,
                        statement.pk,
                        *row,
                        "cleared",
                        "unmatched",
                        True,
                        f"copy:{n}",
                        now,
                    )
                )
        return time.perf_counter() - started


def _clear_entries(tenant) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM reconciliation_bankentry WHERE tenant_id = %s", [tenant.pk])
        cursor.execute("DELETE FROM reconciliation_bankstatement WHERE tenant_id = %s", [tenant.pk])
        cursor.execute("VACUUM ANALYZE reconciliation_bankentry")


def run_once(invoices: int, rounds: int) -> dict:
    _setup_django()
    from django.db import connection

    from core.actors import Actor
    from reconciliation import parsers, services
    from reconciliation.models import BankEntry

    tenant, account = _seed(invoices)
    actor = Actor.system("bench")
    imports, copies = [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "statement.xml"
        transactions = write_camt(path, invoices)
        with path.open("rb") as stream:
            rows = [
                (e.booking_date, e.value_date, e.amount, e.currency, e.bank_transaction_id, e.counterparty_name,
                 e.counterparty_iban, e.reference, e.remittance_text, e.end_to_end_id, e.creditor_reference, e.kind)
                for e in parsers.parse_camt(stream, parsers.StatementHeader())
            ]  # fmt: skip
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for round_ in range(rounds):
            _clear_entries(tenant)
            started = time.perf_counter()
            with path.open("rb") as stream:
                imported = services.statement_import(
                    tenant=tenant, actor=actor, bank_account=account, stream=stream, run_matching=False
                )
            imports.append(time.perf_counter() - started)
            _clear_entries(tenant)
            copies.append(_copy_limit(tenant, account, rows))
            if round_ == rounds - 1:
                _clear_entries(tenant)
                with path.open("rb") as stream:
                    imported = services.statement_import(
                        tenant=tenant, actor=actor, bank_account=account, stream=stream, run_matching=False
                    )
        rss_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        del rows
    connection.cursor().execute("ANALYZE reconciliation_bankentry")
    slow = SlowStatements()
    connection.execute_wrappers.append(slow)
    started = time.perf_counter()
    services.reconciliation_run(tenant_id=tenant.pk, actor=actor)
    match_seconds = time.perf_counter() - started
    again = services.reconciliation_run(tenant_id=tenant.pk, actor=actor)
    from invoicing.models import Invoice
    from reconciliation.models import Reconciliation

    entries = BankEntry.objects.filter(tenant=tenant)
    return {
        "transactions": transactions,
        "entries": imported.new_entry_count,
        "import_s": min(imports),
        "copy_s": min(copies),
        "imports": imports,
        "copies": copies,
        "match_s": match_seconds,
        "reconciled_entries": entries.filter(match_status="reconciled").count(),
        "discrepancy_entries": entries.filter(match_status="discrepancy").count(),
        "unmatched_entries": entries.filter(match_status="unmatched").count(),
        "rules": dict(
            Reconciliation.objects.filter(tenant=tenant, status="reconciled")
            .values_list("rule")
            .annotate(n=__import__("django.db.models", fromlist=["Count"]).Count("id"))
        ),
        "paid": Invoice.objects.filter(tenant=tenant, status="paid").count(),
        "second_run": (again.reconciled, again.discrepancies),
        "rss_before_mb": rss_before / 1024,
        "rss_import_mb": rss_import / 1024,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load": os.getloadavg(),
        "slow": slow.found,
    }


def _report(r: dict) -> None:
    n = r["transactions"]
    print(
        f"{n:>7} transactions in {r['entries']} entries: import {r['import_s']:.2f} s = {n / r['import_s']:,.0f} tx/s "
        f"(rounds {', '.join(f'{s:.2f}' for s in r['imports'])}); COPY limit {r['copy_s']:.2f} s = "
        f"{n / r['copy_s']:,.0f} rows/s (rounds {', '.join(f'{s:.2f}' for s in r['copies'])}); "
        f"import/COPY = {r['import_s'] / r['copy_s']:.1f}x"
    )
    print(
        f"        matching {r['match_s']:.2f} s = {r['entries'] / r['match_s']:,.0f} entries/s: "
        f"{r['reconciled_entries']} reconciled, {r['discrepancy_entries']} discrepancies, "
        f"{r['unmatched_entries']} unmatched; rules {r['rules']}; {r['paid']} invoices paid; "
        f"second run {r['second_run']}"
    )
    print(
        f"        peak RSS {r['peak_rss_mb']:.0f} MB (after seeding {r['rss_before_mb']:.0f} MB, after imports "
        f"{r['rss_import_mb']:.0f} MB); load average {r['load'][0]:.2f} {r['load'][1]:.2f} {r['load'][2]:.2f} "
        f"on {os.cpu_count()} cores shared with other work"
    )
    for took, sql in r["slow"]:
        print(f"    matching statement {took:6.2f} s  {sql}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transactions", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--single", action="store_true", help="one size, in this process")
    args = parser.parse_args()
    if args.single:
        _report(run_once(args.transactions, args.rounds))
        return
    # Each size in a fresh process, so each peak RSS is that size's own.
    for size in (args.transactions // 5, args.transactions):
        subprocess.run(  # noqa: S603 - our own script
            [sys.executable, __file__, "--transactions", str(size), "--rounds", str(args.rounds), "--single"],
            check=True,
        )


if __name__ == "__main__":
    main()
