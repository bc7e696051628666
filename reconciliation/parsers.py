"""Statement file parsers: CAMT.053 (streamed), MT940 (the mt-940 library) and profiled CSV.

Each parser yields ParsedEntry rows one at a time and raises StatementInvalid naming the line or
element at the first defect; the importer writes inside one transaction, so a defect anywhere
imports nothing.
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET  # noqa: S405 - parsing only; entities are refused below
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import IO

from core.errors import ValidationFailed
from core.money import fits_currency, is_currency


class StatementInvalid(ValidationFailed):
    code = "invalid-statement"
    title = "Invalid statement file"


@dataclass(slots=True)
class ParsedEntry:
    booking_date: date
    value_date: date | None
    amount: Decimal
    currency: str
    bank_transaction_id: str = ""
    counterparty_name: str = ""
    counterparty_iban: str = ""
    reference: str = ""
    remittance_text: str = ""
    pending: bool = False


@dataclass(slots=True)
class StatementHeader:
    """Facts about the statement, filled in while parsing (CAMT gives them before the entries)."""

    statement_ref: str = ""
    iban: str = ""
    currency: str = ""
    extra: dict = field(default_factory=dict)


def _amount(text: str | None, currency: str, where: str) -> Decimal:
    try:
        value = Decimal((text or "").strip())
    except InvalidOperation:
        raise StatementInvalid(f"{where}: amount {text!r} is not a number.") from None
    if not value.is_finite() or value < 0:
        raise StatementInvalid(f"{where}: amount {text!r} is not a positive number.")
    if not is_currency(currency):
        raise StatementInvalid(f"{where}: {currency!r} is not an ISO 4217 currency.")
    if not fits_currency(value, currency):
        raise StatementInvalid(f"{where}: amount {text} has more decimals than {currency} allows.")
    return value


def _iso_date(text: str | None, where: str) -> date:
    try:
        return date.fromisoformat((text or "").strip()[:10])
    except ValueError:
        raise StatementInvalid(f"{where}: {text!r} is not a date (YYYY-MM-DD).") from None


# --- CAMT.053 -----------------------------------------------------------------------------------
_LOCAL_NAMES: dict[str, str] = {}


def _local(tag: str) -> str:
    """The tag without its namespace (cached: a statement repeats the same few dozen tags)."""
    name = _LOCAL_NAMES.get(tag)
    if name is None:
        name = _LOCAL_NAMES[tag] = tag.rsplit("}", 1)[-1]
    return name


def _flatten(elem) -> dict:
    """Every descendant of `elem` by its path of local names ("NtryDtls/TxDtls/Refs/EndToEndId"),
    the first occurrence of each path: one walk per entry, then each field is a dict lookup."""
    found: dict = {}
    stack = [(elem, "")]
    while stack:
        node, prefix = stack.pop()
        for child in reversed(node):
            path = prefix + _local(child.tag)
            found[path] = child
            stack.append((child, path + "/"))
    return found


def _get(flat: dict, path: str) -> str:
    found = flat.get(path)
    return (found.text or "").strip() if found is not None and found.text else ""


def parse_camt053(stream: IO[bytes], header: StatementHeader) -> Iterator[ParsedEntry]:
    """Entries of a CAMT.053 file, streamed: each <Ntry> is dropped once read, so memory stays flat."""
    parser = ET.XMLPullParser(events=("start", "end"))
    index = 0
    first = True
    root = stmt = None
    ns = ""
    while True:
        chunk = stream.read(1 << 16)
        if first:
            # A DOCTYPE is how entity-expansion and external-entity attacks start; CAMT never has one.
            if b"<!DOCTYPE" in chunk or b"<!ENTITY" in chunk:
                raise StatementInvalid("element <!DOCTYPE>: document type declarations are not accepted.")
            first = False
        try:
            if chunk:
                parser.feed(chunk)
            else:
                parser.close()
        except ET.ParseError as exc:
            line, column = exc.position
            raise StatementInvalid(f"line {line}, column {column}: malformed XML ({exc.msg}).") from None
        # Tags are compared whole (namespace included): this loop sees every element twice.
        for event, elem in parser.read_events():
            tag = elem.tag
            if event == "start":
                if root is None:
                    if _local(tag) != "Document" or "camt.053" not in tag:
                        raise StatementInvalid(f"element <{_local(tag)}>: not a CAMT.053 Document.")
                    root = elem
                    ns = tag[: tag.index("}") + 1] if tag.startswith("{") else ""
                elif tag == ns + "Stmt":
                    stmt = elem
                continue
            if tag == ns + "Ntry":
                index += 1
                entry = _camt_entry(elem, index)
                # Drop the entry once read: the tree never holds more than one <Ntry>.
                if stmt is not None:
                    stmt.remove(elem)
                if entry is not None:
                    yield entry
            elif tag == ns + "Acct" and stmt is not None and not header.iban:
                flat = _flatten(elem)
                header.iban, header.currency = _get(flat, "Id/IBAN"), _get(flat, "Ccy")
            elif tag == ns + "Id" and stmt is not None and not header.statement_ref and elem in stmt:
                header.statement_ref = (elem.text or "").strip()
        if not chunk:
            break
    if root is None:
        raise StatementInvalid("line 1: empty file, not a CAMT.053 Document.")


def _camt_entry(ntry, index: int) -> ParsedEntry | None:
    flat = _flatten(ntry)
    ref = _get(flat, "NtryRef")
    where = f"element <Ntry> #{index}" + (f" (NtryRef {ref})" if ref else "")
    amt = flat.get("Amt")
    if amt is None:
        raise StatementInvalid(f"{where}: missing <Amt>.")
    currency = amt.get("Ccy", "")
    amount = _amount(amt.text, currency, f"{where} <Amt>")
    indicator = _get(flat, "CdtDbtInd")
    if indicator not in ("CRDT", "DBIT"):
        raise StatementInvalid(f"{where} <CdtDbtInd>: {indicator!r} is neither CRDT nor DBIT.")
    status = _get(flat, "Sts/Cd") or _get(flat, "Sts")
    if status == "INFO":
        return None  # information only: not a booking
    if status not in ("BOOK", "PDNG"):
        raise StatementInvalid(f"{where} <Sts>: {status!r} is not BOOK, PDNG or INFO.")
    booking = _get(flat, "BookgDt/Dt") or _get(flat, "BookgDt/DtTm")
    if not booking:
        raise StatementInvalid(f"{where}: missing <BookgDt>.")
    value = _get(flat, "ValDt/Dt") or _get(flat, "ValDt/DtTm")
    tx = "NtryDtls/TxDtls/" if "NtryDtls/TxDtls" in flat else ""
    party = tx + ("RltdPties/Dbtr" if indicator == "CRDT" else "RltdPties/Cdtr")
    remittance = " ".join((u.text or "").strip() for u in ntry.iter() if u.text and _local(u.tag) == "Ustrd")
    end_to_end = _get(flat, tx + "Refs/EndToEndId")
    if end_to_end == "NOTPROVIDED":
        end_to_end = ""
    creditor_ref = _get(flat, tx + "RmtInf/Strd/CdtrRefInf/Ref")
    return ParsedEntry(
        booking_date=_iso_date(booking, f"{where} <BookgDt>"),
        value_date=_iso_date(value, f"{where} <ValDt>") if value else None,
        amount=amount if indicator == "CRDT" else -amount,
        currency=currency,
        bank_transaction_id=_get(flat, "AcctSvcrRef") or _get(flat, tx + "Refs/AcctSvcrRef"),
        counterparty_name=(_get(flat, party + "/Nm") or _get(flat, party + "/Pty/Nm"))[:200],
        counterparty_iban=_get(flat, party + "Acct/Id/IBAN")[:34],
        reference=(end_to_end or creditor_ref)[:200],
        remittance_text=remittance,
        pending=status == "PDNG",
    )


# --- MT940 --------------------------------------------------------------------------------------
_MT940_REQUIRED = (":20:", ":25:", ":60", ":62")
_EREF = re.compile(r"EREF\+(\S+)")


def parse_mt940(stream: IO[bytes], header: StatementHeader) -> Iterator[ParsedEntry]:
    """Entries of an MT940 file, parsed by the mt-940 library after a line-level sanity check."""
    import mt940

    try:
        text = stream.read().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StatementInvalid(f"byte {exc.start}: the file is not UTF-8 text.") from None
    lines = text.splitlines()
    for tag in _MT940_REQUIRED:
        if not any(line.startswith(tag) for line in lines):
            raise StatementInvalid(f"line {len(lines)}: missing the mandatory {tag} field.")
    statement_line = re.compile(mt940.tags.Statement.pattern, re.VERBOSE | re.IGNORECASE)
    balance_line = re.compile(r"^:6[02][FM]:[CD]\d{6}[A-Z]{3}[\d,]+$")
    for number, line in enumerate(lines, start=1):
        if line.startswith(":61:") and not statement_line.match(line[4:]):
            raise StatementInvalid(f"line {number} (:61:): not a valid statement line: {line[:60]!r}.")
        if line.startswith((":60", ":62")) and not balance_line.match(line.strip()):
            raise StatementInvalid(f"line {number}: not a valid balance: {line[:60]!r}.")
    try:
        transactions = mt940.models.Transactions()
        transactions.parse(text)
    except Exception as exc:  # the library raises bare RuntimeError/ValueError on bad input
        raise StatementInvalid(f"MT940 could not be parsed: {exc}") from None
    header.statement_ref = str(transactions.data.get("transaction_reference", ""))
    header.iban = str(transactions.data.get("account_identification", "")).split("/")[-1]
    for index, tx in enumerate(transactions, start=1):
        data = tx.data
        where = f"transaction #{index} (:61:)"
        money = data.get("amount")
        if money is None:
            raise StatementInvalid(f"{where}: missing amount.")
        currency = str(money.currency or data.get("currency") or "")
        amount = _amount(str(abs(money.amount)), currency, where)
        # The library splits German structured :86: fields (?20 …) into purpose, names and EREF.
        details = " ".join(
            str(data[key]).replace("\n", "")
            for key in ("purpose", "additional_purpose", "transaction_details")
            if data.get(key)
        )
        eref = data.get("end_to_end_reference") or ""
        if not eref:
            found = _EREF.search(details)
            eref = found.group(1) if found else ""
        if str(eref).upper() == "NOTPROVIDED":
            eref = ""
        customer_ref = str(data.get("customer_reference") or "").strip()
        bank_ref = str(data.get("bank_reference") or "").strip()
        booking = data.get("entry_date") or data.get("date")
        yield ParsedEntry(
            booking_date=date(booking.year, booking.month, booking.day),
            value_date=date(data["date"].year, data["date"].month, data["date"].day),
            amount=amount if money.amount >= 0 else -amount,
            currency=currency,
            bank_transaction_id="" if bank_ref.upper() in ("", "NONREF") else bank_ref,
            counterparty_name=str(data.get("applicant_name") or "")[:200],
            counterparty_iban=str(data.get("applicant_iban") or data.get("gvc_applicant_iban") or "")[:34],
            reference=(str(eref) or ("" if customer_ref.upper() == "NONREF" else customer_ref))[:200],
            remittance_text=details,
        )


# --- CSV ----------------------------------------------------------------------------------------
def parse_csv(stream: IO[bytes], header: StatementHeader, *, profile, currency: str) -> Iterator[ParsedEntry]:
    """Entries of a bank's CSV export read through the account's column profile."""
    try:
        text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
        reader = csv.DictReader(text, delimiter=profile.delimiter)
        columns = reader.fieldnames or []
    except UnicodeDecodeError:
        raise StatementInvalid("line 1: the file is not UTF-8 text.") from None
    wanted = {
        "booking date": profile.booking_date_column,
        "amount": profile.amount_column,
        **{
            name: column
            for name, column in {
                "value date": profile.value_date_column,
                "currency": profile.currency_column,
                "transaction id": profile.transaction_id_column,
                "counterparty name": profile.counterparty_name_column,
                "counterparty IBAN": profile.counterparty_iban_column,
                "reference": profile.reference_column,
                "remittance": profile.remittance_column,
                "status": profile.status_column,
            }.items()
            if column
        },
    }
    missing = [column for column in wanted.values() if column not in columns]
    if missing:
        raise StatementInvalid(f"line 1: missing column(s) {', '.join(missing)} of the CSV profile.")
    try:
        for row in reader:
            where = f"line {reader.line_num}"
            if None in row or any(value is None for value in row.values()):
                raise StatementInvalid(f"{where}: wrong number of fields.")
            row_currency = row[profile.currency_column].strip() if profile.currency_column else currency
            raw = row[profile.amount_column].strip()
            if profile.decimal_separator == ",":
                raw = raw.replace(".", "").replace(",", ".")
            else:
                raw = raw.replace(",", "")
            negative = raw.startswith("-")
            amount = _amount(raw.lstrip("-+"), row_currency, f"{where}, column {profile.amount_column}")
            value_raw = row[profile.value_date_column].strip() if profile.value_date_column else ""

            def get(column: str, limit: int, row=row) -> str:
                return row[column].strip()[:limit] if column else ""

            yield ParsedEntry(
                booking_date=_csv_date(row[profile.booking_date_column], profile, where),
                value_date=_csv_date(value_raw, profile, where) if value_raw else None,
                amount=-amount if negative else amount,
                currency=row_currency,
                bank_transaction_id=get(profile.transaction_id_column, 100),
                counterparty_name=get(profile.counterparty_name_column, 200),
                counterparty_iban=get(profile.counterparty_iban_column, 34).replace(" ", ""),
                reference=get(profile.reference_column, 200),
                remittance_text=get(profile.remittance_column, 10_000),
                pending=bool(profile.status_column)
                and row[profile.status_column].strip().lower() == profile.pending_value.lower(),
            )
    except csv.Error as exc:
        raise StatementInvalid(f"line {reader.line_num}: {exc}.") from None
    except UnicodeDecodeError:
        raise StatementInvalid(f"line {reader.line_num}: not UTF-8 text.") from None


def _csv_date(text: str, profile, where: str) -> date:
    try:
        return datetime.strptime(text.strip(), profile.date_format).date()  # noqa: DTZ007 - a date only
    except ValueError:
        raise StatementInvalid(f"{where}: {text!r} is not a date in {profile.date_format}.") from None


def detect_format(head: bytes) -> str:
    """camt053, mt940 or csv from the first bytes of a file."""
    stripped = head.lstrip(b"\xef\xbb\xbf \r\n\t")
    if stripped.startswith(b"<"):
        return "camt053"
    if stripped.startswith((b":20:", b"{1:", b":940:")) or b"\n:20:" in head[:400]:
        return "mt940"
    return "csv"
