"""Reconciliation benchmark on a database of its own (created and migrated if missing).

    DATABASE_URL=postgres://…/any .venv/bin/python bench/reconciliation_bench.py          # 20,000 then 100,000
    DATABASE_URL=postgres://…/any .venv/bin/python bench/reconciliation_bench.py --quick  # 4,000 then 20,000
    .venv/bin/python bench/reconciliation_bench.py --transactions 5000 --single           # one size, this process

The database is DATABASE_URL's server with the database BENCH_DATABASE (ledgerflow_bench_recon); the
Celery broker BENCH_REDIS_URL (redis://127.0.0.1:6379/13), a Redis database of the bench's own: its queue
is purged when the worker starts.

1. Import: a CAMT.053 of N transactions with its opening and closing balances, booked as batch
   bookings of 2–50 transactions mixed with single ones, streamed (lxml iterparse) and
   bulk-inserted by statement_import, against PostgreSQL COPY of the same rows into the same
   table (its audit trigger included): the limit. Rounds alternate (import, COPY, import, COPY …)
   so both see the same machine load; the load average is printed with each round.
2. Matching, as the product runs it: the last import enqueues reconciliation.run_matching after
   commit and a real Celery worker (solo pool, its own process) matches the N entries against N
   open invoices with a realistic mix: 60 % quote the invoice's RF creditor reference, 15 % the
   invoice number in free text, 10 % are one transfer paying two invoices listed in the text
   (multi-invoice, its payment named by end-to-end id), 10 % carry only amount and payer, 5 % quote
   the RF of an invoice that has no payment (missing-payment discrepancies). Timed from the import's
   commit until every entry is matched and the worker is idle; the task's own run time as Celery
   logs it is printed beside it, with the worker's peak RSS (VmHWM).

Each size runs in its own process (and worker), so the peaks compare: flat memory means the
100,000 peak is close to the 20,000 one.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Overridable so parallel checkouts do not share (and truncate) one benchmark database.
BENCH_DATABASE = os.environ.get("BENCH_DATABASE", "ledgerflow_bench_recon")
# The worker's broker: a Redis database of the bench's own (its queue is purged when the worker starts).
os.environ["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
os.environ["CELERY_BROKER_URL"] = os.environ["REDIS_URL"]
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
    moved = sum(cents for cents, _ in _transactions(invoices))
    transactions = _transactions(invoices)
    written = booking = 0
    opening = 1_000_000_00

    def balance(code: str, cents: int) -> str:
        return (
            f'<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">{cents // 100}.{cents % 100:02d}'
            "</Amt><CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2026-03-02</Dt></Dt></Bal>"
        )

    with path.open("w", encoding="utf-8") as out:
        out.write(
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>'
            "<GrpHdr><MsgId>BENCH</MsgId><CreDtTm>2026-03-03T06:00:00Z</CreDtTm></GrpHdr><Stmt>"
            f"<Id>BENCH-{invoices}</Id><Acct><Id><IBAN>{IBAN}</IBAN></Id><Ccy>EUR</Ccy></Acct>"
            + balance("OPBD", opening)
            + balance("CLBD", opening + moved)
            + "\n"
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
        # The trail of earlier runs would make each run write into larger audit indexes than the last.
        cursor.execute("TRUNCATE billing_tenant, audit_event CASCADE")
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


def _copy_limit(tenant, account, rows: list[tuple]) -> float:
    """Seconds PostgreSQL takes to COPY the same rows into the entry table and commit them: the
    rows are formatted as COPY text before the clock starts (no parsing, no adaptation, no dedup)
    and sent in 1 MB writes; the commit runs the foreign-key checks, as it does for the import."""
    from django.db import connection, transaction
    from django.utils import timezone

    from reconciliation.models import BankStatement

    statement = BankStatement.objects.create(tenant=tenant, bank_account=account, format="camt053")
    now = timezone.now().isoformat()
    escape = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})

    def text(value) -> str:
        if value is None:
            return "\\N"
        return value.isoformat() if hasattr(value, "isoformat") else str(value).translate(escape)

    lines = [
        "\t".join((str(tenant.pk), str(account.pk), str(statement.pk), *(text(v) for v in row)))
        + f"\tcleared\tunmatched\tt\tcopy:{n}\t{now}\n"
        for n, row in enumerate(rows)
    ]
    payload = "".join(lines).encode()
    del lines
    columns = (
        "tenant_id, bank_account_id, statement_id, booking_date, value_date, amount, currency, "
        "bank_transaction_id, counterparty_name, counterparty_iban, reference, remittance_text, "
        "end_to_end_id, creditor_reference, kind, status, match_status, auto_match, dedup_key, created_at"
    )
    started = time.perf_counter()
    with transaction.atomic():
        with (
            connection.cursor() as cursor,
            cursor.copy(f"COPY reconciliation_bankentry ({columns}) FROM STDIN") as copy,
        ):
            for offset in range(0, len(payload), 1 << 20):
                copy.write(payload[offset : offset + (1 << 20)])
    return time.perf_counter() - started


def _clear_entries(tenant) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM reconciliation_bankentry WHERE tenant_id = %s", [tenant.pk])
        cursor.execute("DELETE FROM reconciliation_bankstatement WHERE tenant_id = %s", [tenant.pk])
        cursor.execute("VACUUM ANALYZE reconciliation_bankentry")


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def _worker(log_path: Path) -> subprocess.Popen:
    """A Celery worker as the product runs one (solo pool: the task runs in the process measured),
    on this bench's database and broker; the queue is purged first."""
    env = {**os.environ, "DEBUG": "false", "SECRET_KEY": secrets.token_hex(32), "LOG_LEVEL": "INFO"}
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "-P", "solo", "-Q", "default", "--purge",
               "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "info"]  # fmt: skip
    with log_path.open("wb") as log:
        return subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True, stdout=log, stderr=log)  # noqa: S603


def _stop(worker: subprocess.Popen) -> None:
    os.killpg(worker.pid, signal.SIGTERM)
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()


def _peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _wait_ready(log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if b"ready." in log_path.read_bytes():
            return
        time.sleep(0.1)
    raise SystemExit(f"the worker did not start:\n{log_path.read_text()[-2000:]}")


def _wait_matched(tenant, log_path: Path, timeout: float) -> float:
    """Seconds until the worker has logged the matching task as done (polled every 20 ms)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if b"reconciliation.run_matching[" in log_path.read_bytes() and _TASK_DONE.search(
            log_path.read_text()
        ):
            return time.perf_counter() - started
        time.sleep(0.02)
    raise SystemExit(f"matching did not finish in {timeout}s:\n{log_path.read_text()[-2000:]}")


_TASK_DONE = re.compile(r"Task reconciliation\.run_matching\[[^\]]+\] (succeeded in ([\d.]+)s|raised)")


def run_once(invoices: int, rounds: int) -> dict:
    _setup_django()
    from core.actors import Actor
    from reconciliation import parsers, services
    from reconciliation.models import BankEntry

    tenant, account = _seed(invoices)
    actor = Actor.system("bench")
    imports, copies, loads = [], [], []
    tmp = tempfile.TemporaryDirectory()
    path = Path(tmp.name) / "statement.xml"
    log_path = Path(tmp.name) / "worker.log"
    transactions = write_camt(path, invoices)
    # The importer's own peak first: the rows the COPY limit needs are held in this process after.
    _clear_entries(tenant)
    started = time.perf_counter()
    with path.open("rb") as stream:
        services.statement_import(
            tenant=tenant, actor=actor, bank_account=account, stream=stream, run_matching=False
        )
    warmup = time.perf_counter() - started
    rss_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with path.open("rb") as stream:
        rows = [
            (e.booking_date, e.value_date, e.amount, e.currency, e.bank_transaction_id, e.counterparty_name,
             e.counterparty_iban, e.reference, e.remittance_text, e.end_to_end_id, e.creditor_reference, e.kind)
            for e in parsers.parse_camt(stream, parsers.StatementHeader())
        ]  # fmt: skip
    for _ in range(rounds):
        _clear_entries(tenant)
        started = time.perf_counter()
        with path.open("rb") as stream:
            imported = services.statement_import(
                tenant=tenant, actor=actor, bank_account=account, stream=stream, run_matching=False
            )
        imports.append(time.perf_counter() - started)
        _clear_entries(tenant)
        copies.append(_copy_limit(tenant, account, rows))
        loads.append(_load())
    del rows
    # Matching as the product runs it: the import enqueues the task after commit, a worker runs it.
    _clear_entries(tenant)
    worker = _worker(log_path)
    try:
        _wait_ready(log_path)
        worker_idle_mb = _peak_rss_mb(worker.pid)
        load_before = _load()
        with path.open("rb") as stream:
            imported = services.statement_import(
                tenant=tenant, actor=actor, bank_account=account, stream=stream
            )
        match_seconds = _wait_matched(tenant, log_path, timeout=max(600, invoices / 100))
        load_after = _load()
        worker_peak_mb = _peak_rss_mb(worker.pid)
    finally:
        _stop(worker)
    done = _TASK_DONE.search(log_path.read_text())
    if not done.group(2):
        raise SystemExit(f"the matching task failed:\n{log_path.read_text()[-3000:]}")
    tmp.cleanup()
    # Running it again changes nothing (idempotent); in this process, directly.
    again = services.reconciliation_run(tenant_id=tenant.pk, actor=actor)
    from django.db.models import Count

    from invoicing.models import Invoice
    from reconciliation.models import Reconciliation

    entries = BankEntry.objects.filter(tenant=tenant)
    return {
        "transactions": transactions,
        "entries": imported.new_entry_count,
        "imports": imports,
        "warmup": warmup,
        "copies": copies,
        "loads": loads,
        "match_s": match_seconds,
        "task_s": float(done.group(2)),
        "reconciled_entries": entries.filter(match_status="reconciled").count(),
        "discrepancy_entries": entries.filter(match_status="discrepancy").count(),
        "unmatched_entries": entries.filter(match_status="unmatched").count(),
        "rules": dict(
            Reconciliation.objects.filter(tenant=tenant, status="reconciled")
            .values_list("rule")
            .annotate(n=Count("id"))
        ),
        "kinds": dict(
            Reconciliation.objects.filter(tenant=tenant, status="discrepancy")
            .values_list("discrepancy_kind")
            .annotate(n=Count("id"))
        ),
        "paid": Invoice.objects.filter(tenant=tenant, status="paid").count(),
        "second_run": (again.reconciled, again.discrepancies),
        "rss_import_mb": rss_import,
        "worker_idle_mb": worker_idle_mb,
        "worker_peak_mb": worker_peak_mb,
        "load_match": (load_before, load_after),
    }


def _report(r: dict) -> None:
    n = r["transactions"]
    best_import, best_copy = min(r["imports"]), min(r["copies"])
    print(
        f"{n:,} transactions in one CAMT.053 ({r['entries']:,} entries), {len(r['imports'])} alternating rounds:"
    )
    for number, (imp, cop, load) in enumerate(
        zip(r["imports"], r["copies"], r["loads"], strict=True), start=1
    ):
        print(
            f"  round {number}: import {imp:.2f} s = {n / imp:,.0f} tx/s; COPY {cop:.2f} s = {n / cop:,.0f} rows/s; "
            f"import/COPY {imp / cop:.2f}x; load average {load}"
        )
    print(
        f"  best: import {n / best_import:,.0f} tx/s, COPY limit {n / best_copy:,.0f} rows/s: the import runs at "
        f"{best_copy / best_import:.0%} of COPY; a first import (not counted) {n / r['warmup']:,.0f} tx/s, the "
        f"importing process's peak RSS after it {r['rss_import_mb']:.0f} MB"
    )
    print(
        f"  matching on the worker: {r['entries']:,} entries in {r['match_s']:.2f} s from the import's commit = "
        f"{r['entries'] / r['match_s']:,.0f} entries/s (the task itself {r['task_s']:.2f} s = "
        f"{r['entries'] / r['task_s']:,.0f} entries/s); load average {r['load_match'][0]} -> {r['load_match'][1]}"
    )
    print(
        f"    {r['reconciled_entries']:,} reconciled, {r['discrepancy_entries']:,} discrepancies "
        f"{r['kinds']}, {r['unmatched_entries']:,} unmatched; rules {r['rules']}; {r['paid']:,} invoices paid; "
        f"second run {r['second_run']}"
    )
    print(
        f"    worker peak RSS {r['worker_peak_mb']:.0f} MB (idle {r['worker_idle_mb']:.0f} MB); "
        f"{os.cpu_count()} cores shared with whatever else runs"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transactions", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--quick", action="store_true", help="20,000 transactions (and 4,000 for memory), 2 rounds"
    )
    parser.add_argument("--single", action="store_true", help="one size, in this process")
    args = parser.parse_args()
    if args.quick:
        args.transactions, args.rounds = 20_000, 2
    if args.single:
        _report(run_once(args.transactions, args.rounds))
        return
    # Each size in a fresh process (and worker), so each peak RSS is that size's own.
    print(f"load average at start {_load()}")
    for size in (args.transactions // 5, args.transactions):
        sys.stdout.flush()
        subprocess.run(  # noqa: S603 - our own script
            [sys.executable, __file__, "--transactions", str(size), "--rounds", str(args.rounds), "--single"],
            check=True,
        )
    print(f"load average at end {_load()}")


if __name__ == "__main__":
    main()
