"""Every write to reconciliation: statement imports, the matching engine, manual match and unmatch.

Authority order: the bank statement, then the payment rail's confirmation, then anything a
customer or a dashboard says. An invoice moves only on a reconciled match, through the invoicing
settlement services (and so through its transition table).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import IO

import structlog
from django.db import DatabaseError, connection, transaction
from django.db.models import Sum
from django.utils import timezone
from psycopg import errors as psycopg_errors

from billing.lifecycle import PaymentStatus
from billing.models import Payment
from core.actors import Actor
from core.attribution import audited
from core.errors import ApplicationError, Conflict, ValidationFailed
from core.money import ZERO, fits_currency, is_currency, parse_plain, to_decimal
from invoicing import services as invoicing_services
from invoicing.lifecycle import OPEN_STATUSES
from invoicing.models import Invoice
from reconciliation import parsers
from reconciliation.models import (
    ACTIVE_STATUSES,
    DEFAULT_RULES,
    BankAccount,
    BankEntry,
    BankEntryStatus,
    BankStatement,
    DiscrepancyKind,
    MatchRule,
    MatchStatus,
    Reconciliation,
    ReconciliationSettings,
    ReconciliationStatus,
    StatementFormat,
)
from tenancy.models import Tenant

log = structlog.get_logger(__name__)

# Completed payments older than this are not looked at again for a missing bank credit: the
# daily run stays incremental instead of re-reading every payment ever made.
MISSING_BANK_ENTRY_LOOKBACK_DAYS = 90
# An import this large changes the entry table's shape: refresh its statistics at once (about
# 0.1 s) rather than wait for autovacuum, or the matching run right after plans for an empty table.
ANALYZE_AFTER_ROWS = 10_000


# --- Settings -----------------------------------------------------------------------------------
def settings_for(tenant_id: int) -> ReconciliationSettings:
    found = ReconciliationSettings.objects.filter(tenant_id=tenant_id).first()
    return found or ReconciliationSettings(tenant_id=tenant_id)


def tolerances_parse(raw: object) -> dict[str, Decimal]:
    """A currency → tolerance mapping: known currencies, amounts not negative and fitting the
    currency's minor unit (JPY 0 decimals, KWD 3). Amounts are strings, ints or Decimals, never floats."""
    if not isinstance(raw, dict):
        raise ValidationFailed("The tolerances map a currency to an amount.", field="amountTolerances")
    parsed = {}
    for currency, value in raw.items():
        if not isinstance(currency, str) or not is_currency(currency):
            raise ValidationFailed(f"Unknown currency {currency!r}.", field="amountTolerances")
        try:
            amount = parse_plain(value) if isinstance(value, str) else to_decimal(value)
        except (TypeError, ValueError):
            raise ValidationFailed(
                f'The tolerance of {currency} must be an amount such as "0.05".', field="amountTolerances"
            ) from None
        if amount < ZERO or not fits_currency(amount, currency):
            raise ValidationFailed(
                f"The tolerance of {currency} must be a non-negative amount in whole minor units of {currency}.",
                field="amountTolerances",
            )
        parsed[currency] = amount
    return parsed


def settings_update(
    *,
    tenant: Tenant,
    actor: Actor,
    rules: list[str] | None = None,
    amount_tolerances: dict[str, Decimal] | None = None,
) -> ReconciliationSettings:
    """A tenant's rules (known names, no repeats) and tolerances per currency (not negative, each
    fitting its currency; the mapping replaces the previous one, a currency not listed has 0)."""
    if rules is not None:
        unknown = [r for r in rules if r not in DEFAULT_RULES]
        if unknown or len(set(rules)) != len(rules):
            raise ValidationFailed(f"Rules must be distinct names among {DEFAULT_RULES}.", field="rules")
    tolerances = tolerances_parse(amount_tolerances) if amount_tolerances is not None else None
    with audited(actor=actor, reason="reconciliation settings changed"):
        found, _ = ReconciliationSettings.objects.select_for_update().get_or_create(tenant=tenant)
        if rules is not None:
            found.rules = rules
        if tolerances is not None:
            found.amount_tolerances = {
                currency: str(amount) for currency, amount in sorted(tolerances.items())
            }
        found.save()
    return found


# --- Bank accounts ------------------------------------------------------------------------------
def bank_account_create(
    *, tenant: Tenant, actor: Actor, name: str, iban: str, currency: str, bic: str = ""
) -> BankAccount:
    """A tenant's bank account; its IBAN is unique within the tenant."""
    iban = iban.replace(" ", "").upper()
    if BankAccount.objects.filter(tenant=tenant, iban=iban).exists():
        raise Conflict("A bank account with this IBAN exists.", field="iban")
    with audited(actor=actor, reason="bank account created"):
        return BankAccount.objects.create(tenant=tenant, name=name, iban=iban, currency=currency, bic=bic)


# --- Statement import ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ImportResult:
    statement: BankStatement
    entry_count: int
    new_entry_count: int
    # Entries known as pending that this statement shows cleared.
    cleared_count: int
    # Every statement the import created: one per file, one per member of an archive.
    statements: list = field(default_factory=list)


_COPY_COLUMNS = (
    "seq",
    "booking_date",
    "value_date",
    "amount",
    "currency",
    "bank_transaction_id",
    "counterparty_name",
    "counterparty_iban",
    "reference",
    "remittance_text",
    "status",
    "end_to_end_id",
    "creditor_reference",
    "kind",
)

_STAGE_SQL = """
CREATE TEMP TABLE recon_import (
    seq integer, booking_date date, value_date date, amount numeric, currency varchar(3),
    bank_transaction_id text, counterparty_name text, counterparty_iban text, reference text,
    remittance_text text, status text, end_to_end_id text, creditor_reference text, kind text
) ON COMMIT DROP
"""

# An entry without a bank transaction id is known by its facts plus its occurrence among
# identical ones (two equal transfers on one day are two entries), so overlapping statements
# that both carry it agree on its key.
_INSERT_SQL = """
WITH keyed AS (
    SELECT r.*, CASE WHEN r.bank_transaction_id <> '' THEN 'id:' || r.bank_transaction_id
             -- MT940 bank references are not always unique within a statement: the second entry
             -- with one is known by the reference and its occurrence, never merged into the first
             || CASE WHEN row_number() OVER (PARTITION BY r.bank_transaction_id ORDER BY r.seq) > 1
                     THEN ':' || row_number() OVER (PARTITION BY r.bank_transaction_id ORDER BY r.seq)
                     ELSE '' END
        ELSE 'fp:' || md5(concat_ws('|', r.booking_date, r.value_date, r.amount, r.currency,
                                    r.counterparty_iban, r.reference, r.remittance_text))
             || ':' || row_number() OVER (
                 PARTITION BY r.booking_date, r.value_date, r.amount, r.currency, r.counterparty_iban,
                              r.reference, r.remittance_text, (r.bank_transaction_id <> '')
                 ORDER BY r.seq)
        END AS dedup_key
    FROM recon_import r
), unique_keys AS (
    SELECT DISTINCT ON (dedup_key) * FROM keyed ORDER BY dedup_key, (status = 'cleared') DESC, seq
)
INSERT INTO reconciliation_bankentry (
    tenant_id, bank_account_id, statement_id, booking_date, value_date, amount, currency,
    bank_transaction_id, counterparty_name, counterparty_iban, reference, remittance_text, status,
    end_to_end_id, creditor_reference, kind, match_status, auto_match, dedup_key, created_at)
SELECT %(tenant)s, %(account)s, %(statement)s, booking_date, value_date, amount, currency,
       bank_transaction_id, counterparty_name, counterparty_iban, reference, remittance_text, status,
       end_to_end_id, creditor_reference, kind, 'unmatched', true, dedup_key, %(now)s
FROM unique_keys ORDER BY seq
ON CONFLICT (tenant_id, bank_account_id, dedup_key) DO UPDATE
    SET status = 'cleared', booking_date = EXCLUDED.booking_date, value_date = EXCLUDED.value_date
    WHERE reconciliation_bankentry.status = 'pending' AND EXCLUDED.status = 'cleared'
RETURNING id, (xmax = 0) AS inserted
"""
# Counted in the database: an import of 100,000 lines returns one row, not 100,000.
_INSERT_COUNTED_SQL = (
    "WITH written AS (" + _INSERT_SQL + ") SELECT count(*) FILTER (WHERE inserted),"  # noqa: S608 - constant SQL, no input
    " coalesce(array_agg(id) FILTER (WHERE NOT inserted), '{}') FROM written"
)


def _sniff(stream: IO[bytes]) -> bytes:
    head = stream.read(512)
    stream.seek(0)
    return head


def _sha256(stream: IO[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: stream.read(1 << 20), b""):
        digest.update(chunk)
    stream.seek(0)
    return digest.hexdigest()


# An archive is read member by member into a spool; these caps keep a zip bomb (a few KB that
# inflate to terabytes, or millions of members) from filling memory or disk.
ARCHIVE_MAX_MEMBERS = 500
ARCHIVE_MAX_MEMBER_BYTES = 200 * 1024 * 1024
ARCHIVE_MAX_TOTAL_BYTES = 1024 * 1024 * 1024
# Members kept in memory up to this size, spilled to a temporary file beyond.
_SPOOL_BYTES = 8 * 1024 * 1024


def _archive_members(stream: IO[bytes], file_name: str):
    """(name, seekable stream) of each statement in a zip archive, in name order; a 400 for an
    archive that is not one, is too large, or nests archives."""
    try:
        archive = zipfile.ZipFile(stream)
        infos = [i for i in archive.infolist() if not i.is_dir() and not i.filename.startswith("__MACOSX/")]
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise parsers.StatementInvalid(
            f"{file_name or 'the archive'}: not a readable zip archive ({exc})."
        ) from None
    if not infos:
        raise parsers.StatementInvalid(f"{file_name or 'the archive'}: the zip archive holds no file.")
    if len(infos) > ARCHIVE_MAX_MEMBERS:
        raise parsers.StatementInvalid(
            f"{file_name or 'the archive'}: {len(infos)} files; an archive holds at most {ARCHIVE_MAX_MEMBERS}."
        )
    total = 0
    for info in sorted(infos, key=lambda i: i.filename):
        spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115 - returned open
        size = 0
        try:
            with archive.open(info) as member:
                for chunk in iter(lambda member=member: member.read(1 << 20), b""):
                    size += len(chunk)
                    total += len(chunk)
                    if size > ARCHIVE_MAX_MEMBER_BYTES or total > ARCHIVE_MAX_TOTAL_BYTES:
                        raise parsers.StatementInvalid(
                            f"{info.filename}: inflates past {ARCHIVE_MAX_MEMBER_BYTES} bytes "
                            f"(or the archive past {ARCHIVE_MAX_TOTAL_BYTES}); not imported."
                        )
                    spool.write(chunk)
        except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, zlib.error) as exc:
            spool.close()
            raise parsers.StatementInvalid(
                f"{info.filename}: cannot be read from the archive ({exc})."
            ) from None
        except parsers.StatementInvalid:
            spool.close()
            raise
        spool.seek(0)
        yield info.filename, spool


def statement_import(
    *,
    tenant: Tenant,
    actor: Actor,
    bank_account: BankAccount,
    stream: IO[bytes],
    file_name: str = "",
    format: str | None = None,
    run_matching: bool = True,
) -> ImportResult:
    """Import a statement file (or a zip archive of them) all or nothing; an entry already known
    (re-import, overlapping statement, a concurrent import of the same file) is never created twice.
    The format is read from the content. Matching runs after commit."""
    if bank_account.tenant_id != tenant.pk:
        raise ValidationFailed("The bank account belongs to another tenant.", field="bankAccount")
    if parsers.detect_format(_sniff(stream)) != "zip":
        return _import_one(
            tenant=tenant,
            actor=actor,
            bank_account=bank_account,
            stream=stream,
            file_name=file_name,
            format=format,
            run_matching=run_matching,
        )
    results = []
    with transaction.atomic():
        for name, member in _archive_members(stream, file_name):
            with member:
                if parsers.detect_format(_sniff(member)) == "zip":
                    raise parsers.StatementInvalid(f"{name}: an archive inside the archive is not read.")
                try:
                    results.append(
                        _import_one(
                            tenant=tenant,
                            actor=actor,
                            bank_account=bank_account,
                            stream=member,
                            file_name=f"{file_name}/{name}" if file_name else name,
                            format=None,
                            run_matching=run_matching,
                        )
                    )
                except parsers.StatementInvalid as exc:
                    raise parsers.StatementInvalid(f"{name} in the archive: {exc.detail}") from None
    first = results[0]
    return ImportResult(
        statement=first.statement,
        entry_count=sum(r.entry_count for r in results),
        new_entry_count=sum(r.new_entry_count for r in results),
        cleared_count=sum(r.cleared_count for r in results),
        statements=[r.statement for r in results],
    )


_CAMT_FORMATS = (StatementFormat.CAMT052, StatementFormat.CAMT053, StatementFormat.CAMT054)


def _parse(fmt: str, stream: IO[bytes], header: parsers.StatementHeader, bank_account: BankAccount):
    """The entries of the file, parsed lazily (nothing is read before the first entry is asked for)."""
    if fmt == "camt" or fmt in _CAMT_FORMATS:
        return parsers.parse_camt(stream, header)
    if fmt == StatementFormat.MT940:
        return parsers.parse_mt940(stream, header)
    profile = getattr(bank_account, "csv_profile", None)
    if profile is None:
        raise ValidationFailed("This bank account has no CSV column profile.", field="file")
    return parsers.parse_csv(stream, header, profile=profile, currency=bank_account.currency)


def _import_one(
    *,
    tenant: Tenant,
    actor: Actor,
    bank_account: BankAccount,
    stream: IO[bytes],
    file_name: str,
    format: str | None,
    run_matching: bool,
) -> ImportResult:
    detected = parsers.detect_format(_sniff(stream))
    fmt = format or detected
    if fmt not in (*StatementFormat.values, "camt"):
        raise ValidationFailed(f"Unknown statement format {fmt!r}.", field="format")
    header = parsers.StatementHeader()
    entries = _parse(fmt, stream, header, bank_account)
    sha = _sha256(stream)
    with audited(actor=actor, reason=f"statement imported ({fmt})"):
        statement = BankStatement.objects.create(
            tenant=tenant,
            bank_account=bank_account,
            format=fmt if fmt != "camt" else StatementFormat.CAMT053,
            file_name=file_name[:255],
            file_sha256=sha,
        )
        now = timezone.now()
        try:
            # The common case, a statement none of whose entries is known yet: its rows are copied
            # straight into the entry table (one pass, the audit trigger sees them in one statement).
            with transaction.atomic():
                count, new_count = _copy_new_entries(
                    entries, header=header, statement=statement, bank_account=bank_account, now=now
                )
            cleared_ids: list[int] = []
        except psycopg_errors.UniqueViolation as exc:
            if exc.diag.constraint_name != _DEDUP_CONSTRAINT:
                raise
            # An entry is known already (a re-import, an overlapping or intraday statement) or the
            # file repeats one: read it again through the staging table, which keys repeats by
            # their occurrence, skips what is known and clears what was pending.
            stream.seek(0)
            header = parsers.StatementHeader()
            entries = _parse(fmt, stream, header, bank_account)
            count, new_count, cleared_ids = _stage_entries(
                entries, header=header, statement=statement, bank_account=bank_account, now=now
            )
        if new_count >= ANALYZE_AFTER_ROWS:
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE reconciliation_bankentry")
        if cleared_ids:
            _reopen_cleared(cleared_ids)
        statement.statement_ref = header.statement_ref[:100]
        statement.format = header.format or statement.format
        statement.entry_count = count
        statement.new_entry_count = new_count
        statement.save(update_fields=["statement_ref", "format", "entry_count", "new_entry_count"])
        if run_matching:
            _enqueue_matching(tenant.pk)
    log.info(
        "statement.imported",
        tenant=tenant.pk,
        statement=statement.pk,
        format=statement.format,
        entries=count,
        new=new_count,
        cleared=len(cleared_ids),
    )
    return ImportResult(
        statement=statement,
        entry_count=count,
        new_entry_count=new_count,
        cleared_count=len(cleared_ids),
        statements=[statement],
    )


_DEDUP_CONSTRAINT = "bank_entry_unique_dedup"
# What COPY's text format must escape in a value.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
# Rows per COPY of a new statement: large enough that a statement's fixed cost (its audit trigger's
# one INSERT, the COPY's start) vanishes, small enough that the two batches in hand (one being
# written, one being parsed) stay a few megabytes whatever the file's size.
_COPY_BATCH_ROWS = 5_000


def _checked(entries, bank_account: BankAccount):
    """(position, entry) of each parsed entry, refusing one in another currency than the account's."""
    for count, entry in enumerate(entries, start=1):
        if entry.currency != bank_account.currency:
            raise parsers.StatementInvalid(
                f"entry #{count}: currency {entry.currency} differs from the account's {bank_account.currency}."
            )
        yield count, entry


def _check_account(header: parsers.StatementHeader, bank_account: BankAccount) -> None:
    stated = header.iban.replace(" ", "").upper()
    # MT940's :25: may be "BLZ/account" rather than an IBAN: only an IBAN is compared.
    if stated[:2].isalpha() and stated != bank_account.iban:
        raise parsers.StatementInvalid(
            f"The statement is for account {header.iban}, not {bank_account.iban}."
        )


def _numeric_text(amount: Decimal) -> str:
    """The amount as PostgreSQL prints an unconstrained numeric (plain notation, its own scale, no
    negative zero): the text the staging table's key is computed from."""
    text = format(amount, "f")
    return text[1:] if text.startswith("-") and not amount else text


def first_dedup_key(entry: parsers.ParsedEntry) -> str:
    """The key _INSERT_SQL gives an entry that is the first of its kind in its file: "id:" and the
    bank's transaction id, else "fp:", the md5 of its facts as concat_ws joins them (a missing value
    date left out) and ":1". A test pins it to the SQL."""
    if entry.bank_transaction_id:
        return "id:" + entry.bank_transaction_id
    facts = [entry.booking_date.isoformat()]
    if entry.value_date is not None:
        facts.append(entry.value_date.isoformat())
    facts += [
        _numeric_text(entry.amount),
        entry.currency,
        entry.counterparty_iban,
        entry.reference,
        entry.remittance_text,
    ]
    digest = hashlib.md5("|".join(facts).encode(), usedforsecurity=False).hexdigest()
    return f"fp:{digest}:1"


_DIRECT_COLUMNS = (
    "tenant_id, bank_account_id, statement_id, booking_date, value_date, amount, currency, "
    "bank_transaction_id, counterparty_name, counterparty_iban, reference, remittance_text, status, "
    "end_to_end_id, creditor_reference, kind, match_status, auto_match, dedup_key, created_at"
)


def _copy_new_entries(
    entries, *, header: parsers.StatementHeader, statement: BankStatement, bank_account: BankAccount, now
) -> tuple[int, int]:
    """COPY the entries into the entry table, each keyed as the first of its kind; a UniqueViolation
    on the dedup key when one is known already or repeats in the file (the caller's savepoint
    then takes it all back). Rows are formatted here, not adapted value by value, and sent in
    batches of _COPY_BATCH_ROWS, one COPY each, from a thread: while PostgreSQL writes a batch, runs
    its audit trigger and checks its foreign keys, this thread parses the next one."""
    # Rows are built with sentinels for the tab between fields, the end of a row and NULL, so a batch is
    # escaped at once instead of value by value.
    prefix = f"{statement.tenant_id}{_FIELD}{bank_account.pk}{_FIELD}{statement.pk}{_FIELD}"
    suffix = f"{_FIELD}unmatched{_FIELD}t{_FIELD}{{}}{_FIELD}{now.isoformat()}{_ROW}"
    count = 0
    with connection.cursor() as cursor:
        # Each batch's foreign keys are checked when its COPY ends, while the next batch is parsed,
        # instead of all of them at commit while nothing else happens; deferred again afterwards.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        raw = cursor.cursor
        sent = None
        # One sender thread, and this thread only parses while it sends: the connection is used by
        # one thread at a time.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="statement-copy") as sender:
            batch: list[str] = []
            entries_in_batch: list[parsers.ParsedEntry] = []
            for count, entry in _checked(entries, bank_account):  # noqa: B007 - count is used after
                batch.append(prefix + _FIELD.join(_line_texts(entry, _NULL)) + suffix.format(first_dedup_key(entry)))
                entries_in_batch.append(entry)
                if len(batch) >= _COPY_BATCH_ROWS:
                    payload = _copy_text(batch, entries_in_batch, prefix, suffix)
                    if sent is not None:
                        sent.result()
                    sent = sender.submit(_copy_batch, raw, payload)
                    batch, entries_in_batch = [], []
            if sent is not None:
                sent.result()
            if batch:
                _copy_batch(raw, _copy_text(batch, entries_in_batch, prefix, suffix))
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        _check_account(header, bank_account)
    return count, count


# The sentinels rows are built with: control characters no statement text has (XML 1.0 cannot
# carry them), and PostgreSQL text cannot hold NUL at all. A batch whose values hold one anyway (the
# counts do not add up) is escaped value by value instead.
_FIELD, _ROW, _NULL = "\x00", "\x01", "\x02"


def _escaped(text: str) -> str:
    """COPY text of rows built with the sentinels: each value escaped, the sentinels turned into
    tabs, newlines and NULLs. A chain of replace() passes: each is a C scan of the batch, where a
    translate() with multi-character replacements looks every character up one by one."""
    text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text.replace(_FIELD, "\t").replace(_ROW, "\n").replace(_NULL, "\\N")


# Tab-separated fields per row of _DIRECT_COLUMNS.
_COPY_FIELDS = _DIRECT_COLUMNS.count(",") + 1


def _copy_text(rows: list[str], entries: list, prefix: str, suffix: str) -> bytes:
    """A batch of rows built with the sentinels as COPY text, escaped at once."""
    text = "".join(rows)
    if (
        text.count(_FIELD) == len(rows) * (_COPY_FIELDS - 1)
        and text.count(_ROW) == len(rows)
        and text.count(_NULL) == sum(entry.value_date is None for entry in entries)
    ):
        return _escaped(text).encode()
    escape = _COPY_ESCAPES
    head = _escaped(prefix)
    tail = _escaped(suffix)
    rows = []
    for entry in entries:
        fields = _line_texts(entry, "\\N")
        # The dates and the amount need no escaping; the texts after them may hold anything.
        fields = (*fields[:3], *(text.translate(escape) for text in fields[3:]))
        rows.append(head + "\t".join(fields) + tail.format(first_dedup_key(entry).translate(escape)))
    return "".join(rows).encode()


def _line_texts(entry: parsers.ParsedEntry, null: str) -> tuple[str, ...]:
    """_line_values() as COPY text before escaping: dates in ISO form, `null` for a missing value
    date, the amount as PostgreSQL prints it."""
    booking_date, value_date, amount, *texts = _line_values(entry)
    return (booking_date.isoformat(), null if value_date is None else value_date.isoformat(), _numeric_text(amount), *texts)


def _line_values(entry: parsers.ParsedEntry) -> tuple:
    """What both import paths write of a statement line, in the order of the columns after the
    bank-account/statement ids (_DIRECT_COLUMNS) and after `seq` (_COPY_COLUMNS): booking date,
    value date, amount, then the texts."""
    return (
        entry.booking_date,
        entry.value_date,
        entry.amount,
        entry.currency,
        entry.bank_transaction_id,
        entry.counterparty_name,
        entry.counterparty_iban,
        entry.reference,
        entry.remittance_text,
        "pending" if entry.pending else "cleared",
        entry.end_to_end_id,
        entry.creditor_reference,
        entry.kind,
    )


def _copy_batch(raw_cursor, payload: bytes) -> None:
    with raw_cursor.copy(f"COPY reconciliation_bankentry ({_DIRECT_COLUMNS}) FROM STDIN") as copy:
        for offset in range(0, len(payload), 1 << 20):
            copy.write(payload[offset : offset + (1 << 20)])


def _stage_entries(
    entries, *, header: parsers.StatementHeader, statement: BankStatement, bank_account: BankAccount, now
) -> tuple[int, int, list[int]]:
    """COPY the entries into a staging table, then one INSERT … SELECT keys them (repeats by their
    occurrence), skips the known ones and clears known pending ones. (entries, new, cleared ids)."""
    count = 0
    with connection.cursor() as cursor:
        # ON COMMIT DROP is not enough when the import runs inside a caller's transaction.
        cursor.execute("DROP TABLE IF EXISTS recon_import")
        cursor.execute(_STAGE_SQL)
        with cursor.copy(f"COPY recon_import ({', '.join(_COPY_COLUMNS)}) FROM STDIN") as copy:
            for count, entry in _checked(entries, bank_account):  # noqa: B007 - count is used after
                copy.write_row((count, *_line_values(entry)))
        _check_account(header, bank_account)
        cursor.execute(
            _INSERT_COUNTED_SQL,
            {
                "tenant": statement.tenant_id,
                "account": bank_account.pk,
                "statement": statement.pk,
                "now": now,
            },
        )
        new_count, cleared_ids = cursor.fetchone()
        cursor.execute("DROP TABLE recon_import")
    return count, new_count, cleared_ids


def _reopen_cleared(entry_ids: list[int]) -> None:
    """A pending entry that cleared: its timing-difference discrepancy is superseded and the entry
    goes back to matching."""
    now = timezone.now()
    Reconciliation.objects.filter(
        bank_entry_id__in=entry_ids,
        status=ReconciliationStatus.DISCREPANCY,
        discrepancy_kind=DiscrepancyKind.TIMING_DIFFERENCE,
    ).update(status=ReconciliationStatus.REVERSED, resolved_at=now, resolution_reason="bank entry cleared")
    BankEntry.objects.filter(pk__in=entry_ids, match_status=MatchStatus.DISCREPANCY).exclude(
        reconciliations__status__in=ACTIVE_STATUSES
    ).update(match_status=MatchStatus.UNMATCHED)


def _enqueue_matching(tenant_id: int) -> None:
    from reconciliation.tasks import run_matching

    transaction.on_commit(lambda: run_matching.delay(tenant_id))


# --- The matching engine ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MatchingResult:
    reconciled: int
    discrepancies: int
    invoices_settled: int


def _lock_key(tenant_id: int) -> int:
    return zlib.crc32(f"reconciliation:{tenant_id}".encode())


# Unmatched credits of the tenant, each with the payment its reference names (rail transaction
# id first, then the payment's own reference). Failed payments are never candidates.
_CANDIDATES_SQL = """
CREATE TEMP TABLE rc_e ON COMMIT DROP AS
SELECT e.id AS entry_id, e.amount, e.currency, e.status AS entry_status, e.creditor_reference,
       e.counterparty_name,
       coalesce((%(tolerances)s::jsonb ->> e.currency)::numeric, 0) AS tol,
       e.reference || ' ' || e.remittance_text || ' ' || coalesce(p.reference, '') AS texts,
       p.id AS payment_id, p.amount AS payment_amount, p.invoice_id AS payment_invoice_id,
       p.customer_id AS payment_customer_id,
       taken.payment_id IS NOT NULL AS payment_taken,
       row_number() OVER (PARTITION BY p.id ORDER BY e.id) AS payment_rank
FROM (
    SELECT * FROM reconciliation_bankentry u
    WHERE u.tenant_id = %(tenant)s AND u.match_status = 'unmatched' AND u.auto_match AND u.amount > 0
      AND u.kind = 'transfer' AND u.id > %(after)s
    ORDER BY u.id LIMIT %(chunk)s
) e
LEFT JOIN billing_payment p1
    ON %(use_payment)s AND p1.tenant_id = e.tenant_id AND p1.rail_transaction_id = e.reference
   AND p1.rail_transaction_id <> '' AND p1.status <> 'failed' AND p1.currency = e.currency
-- the first payment of each reference, joined by hash: a lateral lookup per entry scans the
-- payments for every entry whose reference (an RF, say) names no payment
LEFT JOIN (
    SELECT DISTINCT ON (x.reference, x.currency) x.id, x.reference, x.currency FROM billing_payment x
    WHERE %(use_payment)s AND x.tenant_id = %(tenant)s AND x.reference <> '' AND x.status <> 'failed'
    ORDER BY x.reference, x.currency, x.id
) p2 ON p1.id IS NULL AND e.reference <> '' AND p2.reference = e.reference AND p2.currency = e.currency
-- the payment and whether a match holds it already, probed by index per entry (OFFSET 0 keeps
-- them lookups): by hash each chunk read every payment and every reconciliation of the tenant
LEFT JOIN LATERAL (
    SELECT * FROM billing_payment p WHERE p.id = coalesce(p1.id, p2.id) OFFSET 0
) p ON true
LEFT JOIN LATERAL (
    SELECT r.payment_id FROM reconciliation_reconciliation r
    WHERE r.payment_id = p.id AND r.status IN ('reconciled', 'discrepancy')
      AND r.discrepancy_kind <> 'missing_bank_entry'
    LIMIT 1
) taken ON true
"""
# Entries matched per transaction. Large enough that a chunk's fixed cost (about fifteen statements,
# three ANALYZEs of its temporary tables and the lookups each statement starts with) is a few percent
# of its work: 95,000 entries matched in 11.2 s by chunks of 10,000, 10.4 s by 20,000, 10.3 s by
# 40,000, 12.1 s by 5,000. Small enough that a chunk's temporary tables and locked invoices stay a
# few megabytes and about two seconds.
MATCH_CHUNK_ENTRIES = 20_000

# The invoices each entry pays: its payment's invoice, else invoice numbers in the references
# and remittance text, else (a payment without invoice) the customer's open invoices whose
# balances add up to the amount.
# The creditor reference's body (after RF and the check digits) is compared with the invoice number
# normalised exactly as invoicing.models.creditor_reference does, the expression invoice_creditor_ref_idx
# is built on.
# Both lookups are one index probe per entry (OFFSET 0 keeps the planner from flattening them back
# into a join): joined by hash they normalised or hashed every invoice of the tenant in each chunk,
# 100 ms a chunk at 100,000 invoices, growing with the invoices rather than with the chunk.
_INVOICES_SQL = """
CREATE TEMP TABLE rc_i (entry_id bigint, invoice_id bigint, rule text) ON COMMIT DROP;
INSERT INTO rc_i
SELECT e.entry_id, i.id, 'creditor_reference' FROM rc_e e
CROSS JOIN LATERAL (
    SELECT i.id FROM invoicing_invoice i WHERE i.tenant_id = %(tenant)s
       AND upper(regexp_replace(i.number, '[^A-Za-z0-9]', '', 'g')) = substr(e.creditor_reference, 5)
    OFFSET 0
) i
WHERE %(use_rf)s AND e.creditor_reference <> '';
INSERT INTO rc_i
SELECT e.entry_id, e.payment_invoice_id, 'payment_reference' FROM rc_e e
WHERE e.payment_invoice_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM rc_i x WHERE x.entry_id = e.entry_id);
INSERT INTO rc_i
SELECT DISTINCT e.entry_id, i.id, 'invoice_number'
FROM rc_e e
CROSS JOIN LATERAL regexp_split_to_table(e.texts, '[^A-Za-z0-9/_-]+') AS token
CROSS JOIN LATERAL (
    SELECT i.id FROM invoicing_invoice i WHERE i.tenant_id = %(tenant)s AND i.number = token OFFSET 0
) i
WHERE %(use_number)s AND e.payment_invoice_id IS NULL AND token <> ''
  AND NOT EXISTS (SELECT 1 FROM rc_i x WHERE x.entry_id = e.entry_id);
"""

# No reference at all: the payer is a customer (by name) with exactly one open invoice of this amount.
_COUNTERPARTY_SQL = """
INSERT INTO rc_i
SELECT entry_id, invoice_id, 'amount_counterparty' FROM (
    SELECT e.entry_id, min(i.id) AS invoice_id, count(*) AS n
    FROM rc_e e
    JOIN billing_customer c ON c.tenant_id = %(tenant)s AND lower(c.name) = lower(e.counterparty_name)
    JOIN invoicing_invoice i ON i.tenant_id = %(tenant)s AND i.customer_id = c.id
         AND i.status = ANY(%(open)s) AND i.currency = e.currency AND i.balance = e.amount
    WHERE e.payment_id IS NULL AND e.counterparty_name <> ''
      AND NOT EXISTS (SELECT 1 FROM rc_i x WHERE x.entry_id = e.entry_id)
    GROUP BY e.entry_id
) found WHERE n = 1
"""

# An entry that found its invoice (by creditor reference, number or amount and payer) but named no
# payment takes that invoice's payment: one not failed, of the entry's amount within the tolerance,
# backing no other entry. Without one the entry stays a missing_payment discrepancy (three-way rule).
_ATTACH_PAYMENTS_SQL = """
UPDATE rc_e e SET payment_id = found.payment_id, payment_amount = found.amount,
       payment_invoice_id = found.invoice_id, payment_customer_id = found.customer_id,
       payment_taken = false, payment_rank = 1
FROM (
    SELECT DISTINCT ON (entry_id) * FROM (
        SELECT DISTINCT ON (p.id) x.entry_id, p.id AS payment_id, p.amount, p.invoice_id, p.customer_id
        FROM (SELECT entry_id, min(invoice_id) AS invoice_id FROM rc_i GROUP BY entry_id HAVING count(*) = 1) x
        JOIN rc_e m ON m.entry_id = x.entry_id AND m.payment_id IS NULL
        JOIN billing_payment p ON p.tenant_id = %(tenant)s AND p.invoice_id = x.invoice_id
             AND p.status <> 'failed' AND p.currency = m.currency AND abs(p.amount - m.amount) <= m.tol
        WHERE NOT EXISTS (
                SELECT 1 FROM reconciliation_reconciliation r
                WHERE r.payment_id = p.id AND r.status IN ('reconciled', 'discrepancy')
                  AND r.discrepancy_kind <> 'missing_bank_entry')
          AND p.id NOT IN (SELECT o.payment_id FROM rc_e o WHERE o.payment_id IS NOT NULL)
        ORDER BY p.id, x.entry_id
    ) per_payment ORDER BY entry_id, payment_id
) found
WHERE e.entry_id = found.entry_id
"""

_CUSTOMER_SUM_SQL = """
WITH lonely AS MATERIALIZED (
    SELECT e.entry_id, e.payment_customer_id, e.currency, e.amount, e.tol FROM rc_e e
    WHERE e.payment_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM rc_i x WHERE x.entry_id = e.entry_id)
), open_invoices AS MATERIALIZED (
    SELECT l.entry_id, i.id AS invoice_id, sum(i.balance) OVER (PARTITION BY l.entry_id) AS total, l.amount,
           l.tol
    FROM lonely l
    JOIN invoicing_invoice i ON i.tenant_id = %(tenant)s AND i.customer_id = l.payment_customer_id
         AND i.status = ANY(%(open)s) AND i.currency = l.currency
)
INSERT INTO rc_i
SELECT entry_id, invoice_id, 'customer_open_sum' FROM open_invoices
WHERE abs(total - amount) <= tol
"""

# One outcome per entry that found a payment or an invoice.
_CLASSIFY_SQL = """
CREATE TEMP TABLE rc_o ON COMMIT DROP AS
WITH inv AS (
    SELECT x.entry_id, count(*) AS n, min(x.rule) AS rule,
           sum(i.balance) AS balance, bool_and(i.status = ANY(%(open)s)) AS all_open,
           bool_or(i.consolidated_into_id IS NOT NULL) AS any_consolidated,
           bool_and(i.currency = e.currency) AS same_currency
    FROM rc_i x JOIN invoicing_invoice i ON i.id = x.invoice_id JOIN rc_e e ON e.entry_id = x.entry_id
    GROUP BY x.entry_id
)
SELECT e.entry_id, e.payment_id, e.amount, e.tol,
       -- what the match may apply: the bank's money, but never more than the payment it pairs with
       -- (a payment backs at most its amount; the rest is a surplus discrepancy)
       LEAST(e.amount, coalesce(e.payment_amount, e.amount)) AS money,
       CASE
         WHEN e.payment_id IS NOT NULL AND (e.payment_taken OR e.payment_rank > 1) THEN 'duplicate'
         WHEN e.entry_status = 'pending' THEN 'timing_difference'
         WHEN e.payment_id IS NOT NULL AND abs(e.amount - e.payment_amount) > e.tol
              THEN 'amount_mismatch'
         WHEN inv.entry_id IS NULL THEN NULL
         WHEN NOT inv.all_open THEN 'duplicate'
         WHEN inv.any_consolidated THEN 'consolidated_source'
         WHEN NOT inv.same_currency THEN 'amount_mismatch'
         WHEN e.payment_id IS NULL THEN 'missing_payment'
         WHEN inv.n > 1 AND NOT %(use_multi)s THEN 'amount_mismatch'
         WHEN inv.n > 1 AND abs(inv.balance - LEAST(e.amount, coalesce(e.payment_amount, e.amount))) > e.tol
              THEN 'amount_mismatch'
         ELSE ''
       END AS kind,
       CASE WHEN e.payment_id IS NOT NULL AND abs(e.amount - e.payment_amount) > e.tol
            THEN e.payment_amount - e.amount
            WHEN inv.n > 1 THEN inv.balance - e.amount ELSE 0 END AS difference,
       CASE WHEN inv.n > 1 AND inv.rule <> 'customer_open_sum' THEN 'multi_invoice'
            ELSE coalesce(inv.rule, 'payment_reference') END AS rule
FROM rc_e e LEFT JOIN inv ON inv.entry_id = e.entry_id
WHERE e.payment_id IS NOT NULL OR inv.entry_id IS NOT NULL
"""

# Reconciled outcomes become allocations: the invoices take the money in order, each at most its
# balance, so no allocation is negative, none is more than the invoice takes, and together they
# never exceed the money. What is left is a surplus discrepancy; a shortfall within the tolerance
# is booked as a credit.
_ALLOCATE_SQL = """
CREATE TEMP TABLE rc_a ON COMMIT DROP AS
SELECT entry_id, payment_id, invoice_id, rule, currency, tol,
       LEAST(balance, GREATEST(money - prior, 0)) AS amount
FROM (
    SELECT o.entry_id, o.payment_id, x.invoice_id, o.rule, i.currency, o.tol, o.money,
           GREATEST(i.balance, 0) AS balance,
           sum(GREATEST(i.balance, 0)) OVER (PARTITION BY o.entry_id ORDER BY x.invoice_id)
               - GREATEST(i.balance, 0) AS prior
    FROM rc_o o JOIN rc_i x ON x.entry_id = o.entry_id JOIN invoicing_invoice i ON i.id = x.invoice_id
    WHERE o.kind = ''
) ordered
"""

# What a reconciled entry brought beyond what its invoices took (an overpayment, or a credit larger
# than its payment) is a discrepancy with that difference: the money is never silently retired.
_INSERT_SURPLUS_SQL = """
INSERT INTO reconciliation_reconciliation (tenant_id, invoice_id, payment_id, bank_entry_id, status,
    discrepancy_kind, rule, amount, currency, difference, note, created_at, resolution_reason)
SELECT %(tenant)s, a.last_invoice, o.payment_id, o.entry_id, 'discrepancy', 'overpayment', o.rule, 0,
       a.currency, o.amount - a.allocated, 'received more than was applied to the invoices', %(now)s, ''
FROM rc_o o
JOIN (SELECT entry_id, sum(amount) AS allocated, max(invoice_id) AS last_invoice, min(currency) AS currency
      FROM rc_a GROUP BY entry_id) a ON a.entry_id = o.entry_id
WHERE o.kind = '' AND o.amount > a.allocated
"""

# Invoices this run settles although they receive less than their balance (within the
# tolerance): the shortfall and the reconciliation its credit is keyed on.
_SHORTFALL_SQL = """
SELECT s.invoice_id, i.balance - s.amount,
       (SELECT max(r.id) FROM reconciliation_reconciliation r JOIN rc_a a
            ON a.entry_id = r.bank_entry_id AND a.invoice_id = r.invoice_id
        WHERE r.invoice_id = s.invoice_id AND r.status = 'reconciled')
FROM (SELECT invoice_id, sum(amount) AS amount, max(tol) AS tol FROM rc_a GROUP BY invoice_id) s
JOIN invoicing_invoice i ON i.id = s.invoice_id
WHERE i.status = ANY(%(open)s) AND s.amount < i.balance AND s.amount >= i.balance - s.tol
ORDER BY s.invoice_id
"""

_INSERT_RECONCILED_SQL = """
INSERT INTO reconciliation_reconciliation (tenant_id, invoice_id, payment_id, bank_entry_id, status,
    discrepancy_kind, rule, amount, currency, difference, note, created_at, resolution_reason)
SELECT %(tenant)s, a.invoice_id, a.payment_id, a.entry_id, 'reconciled', '', a.rule, a.amount,
       a.currency, 0, '', %(now)s, ''
FROM rc_a a
"""

_INSERT_DISCREPANCIES_SQL = """
INSERT INTO reconciliation_reconciliation (tenant_id, invoice_id, payment_id, bank_entry_id, status,
    discrepancy_kind, rule, amount, currency, difference, note, created_at, resolution_reason)
SELECT %(tenant)s, (SELECT min(x.invoice_id) FROM rc_i x WHERE x.entry_id = o.entry_id), o.payment_id,
       o.entry_id, 'discrepancy', o.kind, o.rule, 0, e.currency, o.difference, '', %(now)s, ''
FROM rc_o o JOIN reconciliation_bankentry e ON e.id = o.entry_id
WHERE o.kind <> ''
"""

_MARK_ENTRIES_SQL = """
UPDATE reconciliation_bankentry e
SET match_status = CASE WHEN o.kind = '' THEN 'reconciled' ELSE 'discrepancy' END
FROM rc_o o WHERE o.entry_id = e.id AND e.match_status = 'unmatched'
"""

# A missing-bank-entry discrepancy ends when the payment's bank credit is reconciled.
_RESOLVE_MISSING_SQL = """
UPDATE reconciliation_reconciliation r
SET status = 'resolved', resolved_at = %(now)s, resolution_reason = 'bank entry arrived'
FROM rc_o o
WHERE o.kind = '' AND r.payment_id = o.payment_id AND r.status = 'discrepancy'
  AND r.discrepancy_kind = 'missing_bank_entry'
"""

_MISSING_BANK_ENTRY_SQL = """
INSERT INTO reconciliation_reconciliation (tenant_id, invoice_id, payment_id, bank_entry_id, status,
    discrepancy_kind, rule, amount, currency, difference, note, created_at, resolution_reason)
SELECT p.tenant_id, p.invoice_id, p.id, NULL, 'discrepancy', 'missing_bank_entry', 'payment_reference',
       0, p.currency, p.amount, 'completed by the rail, no bank credit yet', %(now)s, ''
FROM billing_payment p
WHERE p.tenant_id = %(tenant)s AND p.status = 'completed'
  AND p.completed_at < %(due)s AND p.completed_at >= %(since)s
  AND NOT EXISTS (SELECT 1 FROM reconciliation_reconciliation r WHERE r.payment_id = p.id)
"""


# Reversals and returned payments are never a customer paying: each becomes a reversal discrepancy
# naming the entry it takes back (same end-to-end id or reference, opposite sign) and that entry's
# invoice, for an operator to undo the match or chase the customer.
_REVERSALS_SQL = """
WITH reversals AS (
    SELECT e.id, e.currency, e.amount, original.id AS original_id,
           (SELECT min(r.invoice_id) FROM reconciliation_reconciliation r
            WHERE r.bank_entry_id = original.id AND r.status IN ('reconciled', 'discrepancy')) AS invoice_id
    FROM reconciliation_bankentry e
    LEFT JOIN LATERAL (
        SELECT o.id FROM reconciliation_bankentry o
        WHERE o.tenant_id = e.tenant_id AND o.id <> e.id AND o.kind = 'transfer'
          AND sign(o.amount) = -sign(e.amount) AND abs(o.amount) = abs(e.amount)
          AND ((e.end_to_end_id <> '' AND o.end_to_end_id = e.end_to_end_id)
               OR (e.reference <> '' AND o.reference = e.reference))
        ORDER BY o.booking_date DESC, o.id DESC LIMIT 1
    ) original ON true
    WHERE e.tenant_id = %(tenant)s AND e.match_status = 'unmatched' AND e.auto_match AND e.kind <> 'transfer'
), recorded AS (
    INSERT INTO reconciliation_reconciliation (tenant_id, invoice_id, payment_id, bank_entry_id, status,
        discrepancy_kind, rule, amount, currency, difference, note, created_at, resolution_reason)
    SELECT %(tenant)s, v.invoice_id, NULL, v.id, 'discrepancy', 'reversal', 'payment_reference', 0, v.currency,
           v.amount, CASE WHEN v.original_id IS NULL THEN 'reversal or returned payment; original entry not found'
                          ELSE 'reverses bank entry ' || v.original_id END, %(now)s, ''
    FROM reversals v
    RETURNING bank_entry_id
)
UPDATE reconciliation_bankentry SET match_status = 'discrepancy'
WHERE id IN (SELECT bank_entry_id FROM recorded)
"""

_DROP_SQL = "DROP TABLE IF EXISTS rc_e, rc_i, rc_o, rc_a, rc_all"
# The temp tables' row estimates are guesses until analysed, and a guess of millions makes
# PostgreSQL JIT-compile each statement: about a second per statement at 20,000 entries, more
# than running it. Off for this transaction only.
_NO_JIT_SQL = "SET LOCAL jit = off"
_DROP_STEP_SQL = "DROP TABLE IF EXISTS rc_i, rc_o, rc_a"

# A match the engine could not apply: the entry leaves the automatic queue with the reason, so
# it never blocks the tenant's next runs.
_MATCH_FAILED_SQL = """
INSERT INTO reconciliation_reconciliation (tenant_id, invoice_id, payment_id, bank_entry_id, status,
    discrepancy_kind, rule, amount, currency, difference, note, created_at, resolution_reason)
SELECT %(tenant)s, NULL, e.payment_id, e.entry_id, 'discrepancy', 'match_failed', 'payment_reference', 0,
       e.currency, 0, %(note)s, %(now)s, ''
FROM rc_all e WHERE e.entry_id = %(entry)s;
UPDATE reconciliation_bankentry SET match_status = 'discrepancy'
WHERE id = %(entry)s AND match_status = 'unmatched';
"""


@dataclass
class _Counts:
    reconciled: int = 0
    discrepancies: int = 0
    invoices_settled: int = 0

    def add(self, other: _Counts) -> None:
        self.reconciled += other.reconciled
        self.discrepancies += other.discrepancies
        self.invoices_settled += other.invoices_settled


def _match_step(cursor, *, params: dict, rules: set, actor: Actor, tolerances: dict, counts: _Counts) -> None:
    """Match the entries in rc_e: classify, allocate, record, book tolerance credits, settle."""
    # Temporary tables have no statistics until analysed: without them the planner guesses a
    # handful of rows and picks nested loops that are quadratic at 100,000 entries.
    cursor.execute("ANALYZE rc_e")
    cursor.execute(_INVOICES_SQL, params)
    if MatchRule.CUSTOMER_OPEN_SUM in rules:
        cursor.execute(_CUSTOMER_SUM_SQL, params)
    if MatchRule.AMOUNT_COUNTERPARTY in rules:
        cursor.execute(_COUNTERPARTY_SQL, params)
    # The discrepancy insert looks up each entry's first invoice: without an index that is a scan of
    # rc_i per discrepancy (114 s for 5,000 discrepancies among 100,000 entries).
    cursor.execute("CREATE INDEX ON rc_i (entry_id); ANALYZE rc_i")
    cursor.execute(_ATTACH_PAYMENTS_SQL, params)
    cursor.execute("ANALYZE rc_e")
    # Lock the invoices before reading their balances, so a cancel or a manual match running
    # now cannot change them between classification and settlement.
    cursor.execute(
        "SELECT 1 FROM invoicing_invoice WHERE id IN (SELECT invoice_id FROM rc_i) ORDER BY id FOR UPDATE"
    )
    cursor.execute(_CLASSIFY_SQL, params)
    cursor.execute("ANALYZE rc_o")
    cursor.execute(_ALLOCATE_SQL, params)
    cursor.execute("ANALYZE rc_a")
    cursor.execute(_INSERT_RECONCILED_SQL, params)
    reconciled = cursor.rowcount
    cursor.execute(_INSERT_DISCREPANCIES_SQL, params)
    discrepancies = cursor.rowcount
    if any(amount > ZERO for amount in tolerances.values()):
        cursor.execute(_SHORTFALL_SQL, params)
        for invoice_id, shortfall, reconciliation_id in cursor.fetchall():
            # Keyed on the reconciliation: the same match never books its tolerance twice.
            invoicing_services.invoice_book_tolerance_credit(
                invoice=Invoice.objects.get(pk=invoice_id),
                actor=actor,
                amount=shortfall,
                idempotency_key=f"reconciliation-{reconciliation_id}-tolerance",
            )
            Reconciliation.objects.filter(pk=reconciliation_id).update(difference=shortfall)
    settled = invoicing_services.invoices_apply_settlements(
        tenant_id=params["tenant"],
        actor=actor,
        allocations_table="rc_a",
        tolerances=tolerances,
        reason="reconciled with payment and bank entry",
    )
    cursor.execute(_INSERT_SURPLUS_SQL, params)
    discrepancies += cursor.rowcount
    cursor.execute(_MARK_ENTRIES_SQL, params)
    cursor.execute(_RESOLVE_MISSING_SQL, params)
    counts.reconciled += reconciled
    counts.discrepancies += discrepancies
    counts.invoices_settled += settled.invoices_settled


def _failure_reason(exc: Exception) -> str:
    if isinstance(exc, ApplicationError):
        return f"could not be applied: {exc.detail}"[:500]
    diag = getattr(getattr(exc, "__cause__", None), "diag", None)
    message = getattr(diag, "message_primary", None) or str(exc).splitlines()[0]
    return f"could not be applied ({type(exc).__name__}): {message}"[:500]


def _match_chunk(cursor, *, tenant_id: int, step: dict) -> _Counts:
    """Match the chunk in rc_e set-based; when that fails, each entry in its own savepoint, an entry
    that still fails becoming a match_failed discrepancy saying why."""
    counts = _Counts()
    params = step["params"]
    try:
        with transaction.atomic():
            _match_step(cursor, **step, counts=counts)
    except (DatabaseError, ApplicationError) as exc:
        log.warning("reconciliation.run.entry_by_entry", tenant=tenant_id, error=_failure_reason(exc))
        counts = _Counts()
        cursor.execute("ALTER TABLE rc_e RENAME TO rc_all")
        cursor.execute("SELECT entry_id FROM rc_all ORDER BY entry_id")
        for (entry_id,) in cursor.fetchall():
            try:
                with transaction.atomic():
                    cursor.execute(_DROP_STEP_SQL)
                    cursor.execute(
                        "DROP TABLE IF EXISTS rc_e; "
                        "CREATE TEMP TABLE rc_e ON COMMIT DROP AS SELECT * FROM rc_all WHERE entry_id = %s",
                        [entry_id],
                    )
                    _match_step(cursor, **step, counts=counts)
            except (DatabaseError, ApplicationError) as entry_exc:
                reason = _failure_reason(entry_exc)
                log.warning("reconciliation.entry.failed", tenant=tenant_id, entry=entry_id, reason=reason)
                cursor.execute(_MATCH_FAILED_SQL, {**params, "entry": entry_id, "note": reason})
                counts.discrepancies += 1
    return counts


def reconciliation_run(*, tenant_id: int, actor: Actor) -> MatchingResult:
    """Match the tenant's unmatched bank entries against payments and invoices, set-based.

    Incremental (only unmatched entries are read) and idempotent (a second run finds nothing
    new); the entries are taken in chunks of MATCH_CHUNK_ENTRIES by id, each chunk in its own
    transaction under the tenant's advisory lock (so runs for one tenant interleave chunk by chunk,
    never within one). One bad entry never blocks the others: when a chunk's set-based step fails,
    each of its entries is matched in its own savepoint and an entry that still fails becomes a
    match_failed discrepancy saying why.
    """
    config = settings_for(tenant_id)
    rules = set(config.rules)
    tolerances = {currency: config.tolerance_for(currency) for currency in config.amount_tolerances}
    now = timezone.now()
    params = {
        "tenant": tenant_id,
        "tolerances": json.dumps({currency: str(amount) for currency, amount in tolerances.items()}),
        "open": list(OPEN_STATUSES),
        "now": now,
        "use_rf": MatchRule.CREDITOR_REFERENCE in rules,
        "use_payment": MatchRule.PAYMENT_REFERENCE in rules,
        "use_number": MatchRule.INVOICE_NUMBER in rules,
        "use_multi": MatchRule.MULTI_INVOICE in rules,
    }
    step = {"params": params, "rules": rules, "actor": actor, "tolerances": tolerances}
    counts = _Counts()
    after = 0
    while True:
        # A chunk of entries per transaction: each rule is one statement over the chunk, so the
        # temporary tables, the invoices locked and the transaction stay the same size however many
        # entries wait, and what a chunk matched is committed before the next one is read.
        with audited(actor=actor, reason="reconciliation run"), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_lock_key(tenant_id)])
            cursor.execute(_NO_JIT_SQL)
            # ON COMMIT DROP is not enough when the run is nested in a caller's transaction.
            cursor.execute(_DROP_SQL)
            cursor.execute(_CANDIDATES_SQL, {**params, "after": after, "chunk": MATCH_CHUNK_ENTRIES})
            cursor.execute("SELECT count(*), max(entry_id) FROM rc_e")
            found, last = cursor.fetchone()
            if found:
                counts.add(_match_chunk(cursor, tenant_id=tenant_id, step=step))
            cursor.execute(_DROP_SQL)
        if found < MATCH_CHUNK_ENTRIES:
            break
        after = last
    with audited(actor=actor, reason="reconciliation run"), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_lock_key(tenant_id)])
        cursor.execute(_NO_JIT_SQL)
        cursor.execute(
            _MISSING_BANK_ENTRY_SQL,
            {
                **params,
                "due": now - timedelta(days=config.bank_entry_grace_days),
                "since": now - timedelta(days=MISSING_BANK_ENTRY_LOOKBACK_DAYS),
            },
        )
        counts.discrepancies += cursor.rowcount
        cursor.execute(_REVERSALS_SQL, params)
        counts.discrepancies += cursor.rowcount
    log.info(
        "reconciliation.run",
        tenant=tenant_id,
        reconciled=counts.reconciled,
        discrepancies=counts.discrepancies,
        invoices=counts.invoices_settled,
    )
    return MatchingResult(
        reconciled=counts.reconciled,
        discrepancies=counts.discrepancies,
        invoices_settled=counts.invoices_settled,
    )


def tenants_with_matching_work() -> list[int]:
    """Tenants that have unmatched bank entries or completed payments (the daily run's fan-out)."""
    with_entries = BankEntry.objects.filter(match_status=MatchStatus.UNMATCHED).values_list(
        "tenant_id", flat=True
    )
    with_payments = Payment.objects.filter(status=PaymentStatus.COMPLETED).values_list("tenant_id", flat=True)
    return sorted(set(with_entries.distinct()) | set(with_payments.distinct()))


# --- Manual resolution --------------------------------------------------------------------------
class BankEntryAlreadyReconciled(Conflict):
    code = "bank-entry-reconciled"
    title = "The bank entry is already reconciled"


class BankEntryPending(Conflict):
    code = "bank-entry-pending"
    title = "The bank entry has not cleared"


class BankEntryExhausted(Conflict):
    code = "bank-entry-exhausted"
    title = "The bank entry has too little left"


class PaymentExhausted(Conflict):
    code = "payment-exhausted"
    title = "The payment backs too little"


def _allocated(queryset) -> Decimal:
    return queryset.filter(status__in=ACTIVE_STATUSES).aggregate(total=Sum("amount"))["total"] or ZERO


def reconciliation_match_manual(
    *,
    tenant: Tenant,
    actor: Actor,
    bank_entry: BankEntry,
    invoices: list[tuple[Invoice, Decimal]],
    payment: Payment,
    reason: str,
) -> list[Reconciliation]:
    """An operator links a bank entry and a payment (both required: the three-way rule) to
    invoices with the amounts each takes. Each amount is positive and fits the currency; together
    with what the entry and the payment already back (their active reconciliations, automatic or
    manual) they stay within the entry's and the payment's amounts. Open discrepancies of the entry
    are resolved; each invoice is settled through invoicing; what the entry has left unallocated
    becomes an amount_mismatch discrepancy (difference = the remainder), so nothing is retired
    silently."""
    if not reason.strip():
        raise ValidationFailed("Say why you match by hand.", field="reason")
    if not invoices:
        raise ValidationFailed("Name at least one invoice.", field="invoices")
    if payment is None:
        raise ValidationFailed(
            "Name the payment this bank entry settles: no invoice is paid without a payment and a bank entry.",
            field="payment",
        )
    if payment.tenant_id != tenant.pk or payment.status == PaymentStatus.FAILED:
        raise ValidationFailed("A failed payment cannot settle an invoice.", field="payment")
    if payment.currency != bank_entry.currency:
        raise ValidationFailed("The payment is in another currency than the bank entry.", field="payment")
    for index, (invoice, amount) in enumerate(invoices):
        if amount <= ZERO or not fits_currency(amount, bank_entry.currency):
            raise ValidationFailed(
                f"Each amount must be positive and in whole minor units of {bank_entry.currency}.",
                field=f"invoices[{index}].amount",
            )
        if invoice.tenant_id != tenant.pk or invoice.currency != bank_entry.currency:
            raise ValidationFailed(
                "An invoice is of another tenant or currency.", field=f"invoices[{index}].invoice"
            )
        if invoice.customer_id != payment.customer_id:
            # three-way: the payment names who paid; it settles that customer's invoices only
            raise ValidationFailed(
                "The invoice belongs to another customer than the payment.",
                field=f"invoices[{index}].invoice",
            )
    total = sum((amount for _, amount in invoices), ZERO)
    created = []
    with audited(actor=actor, reason=f"matched by hand: {reason}"):
        # Serialises with the matching run and every other manual match of the tenant: the checks
        # below see every allocation committed before, none half-made.
        cursor_lock(tenant.pk)
        entry = BankEntry.objects.select_for_update().get(pk=bank_entry.pk, tenant=tenant)
        if entry.match_status == MatchStatus.RECONCILED:
            raise BankEntryAlreadyReconciled(
                "This bank entry is already reconciled.", extra={"matchStatus": entry.match_status}
            )
        if entry.status == BankEntryStatus.PENDING:
            raise BankEntryPending(
                "This bank entry is still pending at the bank: match it once a statement shows it booked.",
                extra={"status": entry.status},
            )
        locked_payment = Payment.objects.select_for_update().get(pk=payment.pk, tenant=tenant)
        if locked_payment.status == PaymentStatus.FAILED:
            raise ValidationFailed("A failed payment cannot settle an invoice.", field="payment")
        entry_left = entry.amount - _allocated(entry.reconciliations.all())
        if total > entry_left:
            raise BankEntryExhausted(
                "The amounts add up to more than the bank entry has left.",
                extra={"available": str(entry_left), "requested": str(total)},
            )
        payment_left = locked_payment.amount - _allocated(locked_payment.reconciliations.all())
        if total > payment_left:
            raise PaymentExhausted(
                "The amounts add up to more than the payment still backs.",
                extra={"available": str(payment_left), "requested": str(total)},
            )
        now = timezone.now()
        entry.reconciliations.filter(status=ReconciliationStatus.DISCREPANCY).update(
            status=ReconciliationStatus.RESOLVED, resolved_at=now, resolution_reason=reason[:500]
        )

        def record(**fields) -> Reconciliation:
            return Reconciliation.objects.create(
                tenant=tenant,
                payment=locked_payment,
                bank_entry=entry,
                rule=MatchRule.MANUAL,
                currency=entry.currency,
                **fields,
            )

        for invoice, amount in invoices:
            result = invoicing_services.invoice_apply_settlement(
                invoice=invoice, actor=actor, amount=amount, reason=f"matched by hand: {reason}"
            )
            created.append(
                record(
                    invoice=invoice,
                    status=ReconciliationStatus.RECONCILED,
                    amount=result.applied,
                    difference=result.excess,
                    note=reason[:500],
                )
            )
        remainder = entry.amount - _allocated(entry.reconciliations.all())
        if remainder > ZERO:
            created.append(
                record(
                    invoice=None,
                    status=ReconciliationStatus.DISCREPANCY,
                    discrepancy_kind=DiscrepancyKind.AMOUNT_MISMATCH,
                    amount=ZERO,
                    difference=remainder,
                    note="part of the bank entry is not allocated to any invoice",
                )
            )
        entry.match_status = MatchStatus.DISCREPANCY if remainder > ZERO else MatchStatus.RECONCILED
        entry.save(update_fields=["match_status"])
    return created


def cursor_lock(tenant_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_lock_key(tenant_id)])


def reconciliation_unmatch(*, reconciliation: Reconciliation, actor: Actor, reason: str) -> Reconciliation:
    """Undo a match or dismiss a discrepancy, only where the books stay consistent: money applied
    to the invoice is taken back where the invoice can take it back (never from a paid, written-off
    or cancelled invoice: 409, nothing changes). The bank entry returns to the unmatched queue when
    nothing of it stays allocated; money freed from an entry still partly allocated becomes an
    amount_mismatch discrepancy for an operator."""
    if not reason.strip():
        raise ValidationFailed("Say why you unmatch.", field="reason")
    with audited(actor=actor, reason=f"unmatched: {reason}"):
        cursor_lock(reconciliation.tenant_id)
        locked = Reconciliation.objects.select_for_update().get(pk=reconciliation.pk)
        if locked.status not in ACTIVE_STATUSES:
            raise Conflict("This reconciliation is not active.", extra={"currentStatus": locked.status})
        was_allocation = locked.status == ReconciliationStatus.RECONCILED and locked.invoice_id is not None
        if was_allocation:
            # Also for an allocation of 0 (a tolerance credit settled the rest): the invoice's
            # status decides whether the match may go.
            invoicing_services.invoice_reverse_settlement(
                invoice=locked.invoice, actor=actor, amount=locked.amount, reason=f"unmatched: {reason}"
            )
        locked.status = ReconciliationStatus.REVERSED
        locked.resolved_at = timezone.now()
        locked.resolution_reason = reason[:500]
        locked.save(update_fields=["status", "resolved_at", "resolution_reason"])
        if locked.bank_entry_id:
            _entry_after_unmatch(locked, freed=was_allocation and locked.amount > ZERO)
    return locked


def _entry_after_unmatch(undone: Reconciliation, *, freed: bool) -> None:
    entry = BankEntry.objects.select_for_update().get(pk=undone.bank_entry_id)
    active = entry.reconciliations.filter(status__in=ACTIVE_STATUSES)
    if not active.exists():
        entry.match_status = MatchStatus.UNMATCHED
    else:
        if freed:
            # One open discrepancy carries what the entry has unallocated: the one a match left for
            # its remainder (or surplus) is superseded by this one, never counted twice.
            active.filter(
                status=ReconciliationStatus.DISCREPANCY,
                discrepancy_kind__in=[DiscrepancyKind.AMOUNT_MISMATCH, DiscrepancyKind.OVERPAYMENT],
            ).update(
                status=ReconciliationStatus.RESOLVED,
                resolved_at=timezone.now(),
                resolution_reason="superseded: part of the entry was unmatched",
            )
            Reconciliation.objects.create(
                tenant_id=entry.tenant_id,
                payment_id=undone.payment_id,
                bank_entry=entry,
                status=ReconciliationStatus.DISCREPANCY,
                discrepancy_kind=DiscrepancyKind.AMOUNT_MISMATCH,
                rule=MatchRule.MANUAL,
                amount=ZERO,
                currency=entry.currency,
                difference=entry.amount - _allocated(active),
                note="part of the bank entry is no longer allocated (unmatched)",
            )
        has_discrepancy = active.filter(status=ReconciliationStatus.DISCREPANCY).exists()
        entry.match_status = MatchStatus.DISCREPANCY if has_discrepancy else MatchStatus.RECONCILED
    # An operator unmatched it: the engine leaves it to operators from then on.
    entry.auto_match = False
    entry.save(update_fields=["match_status", "auto_match"])
