"""Statement file parsers: CAMT.052/053/054 (streamed), MT940/MT942 (the mt-940 library) and
profiled CSV.

Each parser yields ParsedEntry rows one at a time and raises StatementInvalid naming the line or
element at the first defect; the importer writes inside one transaction, so a defect anywhere
imports nothing.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import IO

import mt940
from lxml import etree
from stdnum import iban as iban_number

from core.errors import ValidationFailed
from core.money import UnknownCurrency, fits_currency, get_currency, is_currency


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
    end_to_end_id: str = ""
    # ISO 11649 structured creditor reference (RF…), compact; blank when the entry carries none.
    creditor_reference: str = ""
    # transfer, reversal (CAMT RvslInd, MT940 RC/RD) or return (a returned payment).
    kind: str = "transfer"


@dataclass(slots=True)
class StatementHeader:
    """Facts about the statement, filled in while parsing (CAMT gives them before the entries)."""

    statement_ref: str = ""
    iban: str = ""
    currency: str = ""
    # The format the content turned out to be (camt052, camt053, camt054, mt940, csv).
    format: str = ""
    extra: dict = field(default_factory=dict)


@lru_cache(maxsize=64)
def _minor_units(currency: str) -> int | None:
    """The currency's minor units, None when it is not an ISO 4217 currency (cached: an import
    asks once per transaction)."""
    try:
        return get_currency(currency).minor_units
    except UnknownCurrency:
        return None


def _amount(text: str | None, currency: str, where: str) -> Decimal:
    try:
        value = Decimal((text or "").strip())
    except InvalidOperation:
        raise StatementInvalid(f"{where}: amount {text!r} is not a number.") from None
    if not value.is_finite() or value < 0:
        raise StatementInvalid(f"{where}: amount {text!r} is not a positive number.")
    minor_units = _minor_units(currency)
    if minor_units is None:
        raise StatementInvalid(f"{where}: {currency!r} is not an ISO 4217 currency.")
    exponent = value.as_tuple().exponent
    if -exponent > minor_units and not fits_currency(value, currency):
        raise StatementInvalid(f"{where}: amount {text} has more decimals than {currency} allows.")
    return value


def _iso_date(text: str | None, where: str) -> date:
    try:
        return date.fromisoformat((text or "").strip()[:10])
    except ValueError:
        raise StatementInvalid(f"{where}: {text!r} is not a date (YYYY-MM-DD).") from None


def _rf_in(*texts: str) -> str:
    """The first valid ISO 11649 creditor reference (RF…) in `texts`, compact; blank when none."""
    for text in texts:
        upper = text.upper()
        if "RF" not in upper:
            continue
        for found in _RF.finditer(upper):
            candidate = found.group(0).replace(" ", "")
            if _rf_valid(candidate):
                return candidate
    return ""


# RF, two check digits, up to 21 characters; customers often print it in groups of four.
_RF = re.compile(r"\bRF\d{2}(?: ?[A-Z0-9]){1,21}\b")
# ISO 7064 MOD 97-10 over the reference with its first four characters moved to the end, letters
# as numbers (A = 10 … Z = 35): what stdnum.iso11649 checks, without its per-character generators
# (it cost a third of the parse at 100,000 transactions).
_RF_DIGITS = str.maketrans({chr(c): str(c - 55) for c in range(ord("A"), ord("Z") + 1)})


def _rf_valid(candidate: str) -> bool:
    """`candidate` (upper case, no spaces, matched by _RF) is a valid ISO 11649 reference."""
    return len(candidate) <= 25 and int((candidate[4:] + candidate[:4]).translate(_RF_DIGITS)) % 97 == 1


# --- CAMT.052 / CAMT.053 / CAMT.054 -------------------------------------------------------------
# camt.052 (intraday report), camt.053 (end-of-day statement), camt.054 (debit/credit notification);
# 001.02 is the oldest version banks still send.
_CAMT_DOCUMENT = re.compile(r"^\{urn:iso:std:iso:20022:tech:xsd:camt\.(05[234])\.001\.(\d{2})\}Document$")
# The element that holds the entries and the account in each message.
_CAMT_CONTAINERS = {"052": "Rpt", "053": "Stmt", "054": "Ntfctn"}
# Only these are given to Python while streaming; everything inside an entry is read from the
# entry once it ends, then the entry is dropped (memory stays flat however long the file).
_CAMT_TAGS = ("{*}Document", "{*}Stmt", "{*}Rpt", "{*}Ntfctn", "{*}Ntry")
# Bank transaction sub-families (ISO 20022 external code list) that mean a payment came back.
_RETURN_SUBFAMILIES = frozenset({"RRTN", "RPCR", "ARET"})


class _Paths:
    """ElementPath expressions in one namespace, built once per path."""

    def __init__(self, ns: str):
        self.ns, self.cache = ns, {}

    def __call__(self, path: str) -> str:
        found = self.cache.get(path)
        if found is None:
            found = self.cache[path] = "/".join(self.ns + part for part in path.split("/"))
        return found

    def text(self, elem, path: str) -> str:
        found = elem.findtext(self(path))
        return found.strip() if found else ""


# The paths of a transaction (<TxDtls>) the importer reads; everything else under it is skipped
# without being visited (banks add agents, purposes, dates and codes an entry does not keep).
_TX_FIELDS = (
    "Amt",
    "AmtDtls/TxAmt/Amt",
    "CdtDbtInd",
    "Refs/AcctSvcrRef",
    "Refs/EndToEndId",
    "RmtInf/Ustrd",
    "RmtInf/Strd/CdtrRefInf/Ref",
    "RltdPties/Dbtr/Nm",
    "RltdPties/Dbtr/Pty/Nm",
    "RltdPties/DbtrAcct/Id/IBAN",
    "RltdPties/Cdtr/Nm",
    "RltdPties/Cdtr/Pty/Nm",
    "RltdPties/CdtrAcct/Id/IBAN",
    "RtrInf",
)


@lru_cache(maxsize=16)
def _tx_trie(ns: str) -> dict:
    """_TX_FIELDS as a tree of namespaced tags: {tag: (path, {child tag: …})}."""
    root: dict = {}
    for wanted in _TX_FIELDS:
        node, parts = root, wanted.split("/")
        for depth, part in enumerate(parts, start=1):
            node = node.setdefault(ns + part, ("/".join(parts[:depth]), {}))[1]
    return root


def _flatten(elem, ns: str) -> dict:
    """The fields of a transaction by their path of local names ("Refs/EndToEndId"), the first of
    each path in document order, plus all its <Ustrd> lines in order under "RmtInf/Ustrd*": one
    walk over the wanted elements only, then each field is a dict lookup (an ElementPath query per
    field costs several times more at 100,000 transactions)."""
    found: dict = {}
    ustrd: list = []
    stack = [(elem, _tx_trie(ns))]
    while stack:
        node, trie = stack.pop()
        later = []
        for child in node:
            known = trie.get(child.tag)
            if known is None:
                continue
            path, below = known
            if path == "RmtInf/Ustrd":
                ustrd.append(child)
            if path not in found:
                found[path] = child
            if below:
                later.append((child, below))
        # the first child's subtree first, so "the first of each path" is in document order
        later.reverse()
        stack.extend(later)
    found["RmtInf/Ustrd*"] = ustrd
    return found


def _flat_text(flat: dict, path: str) -> str:
    found = flat.get(path)
    return found.text.strip() if found is not None and found.text else ""


def _refuse_doctype(elem) -> None:
    docinfo = elem.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        # Entity expansion (billion laughs) and external entities (XXE) both start with one; no bank
        # statement has one. lxml has already been told not to load, resolve or fetch anything.
        raise StatementInvalid(
            f"line {elem.sourceline}: a <!DOCTYPE> declaration precedes the document; "
            "statement files must not have one."
        )


def parse_camt(stream: IO[bytes], header: StatementHeader) -> Iterator[ParsedEntry]:
    """Entries of a CAMT.052, .053 or .054 file (versions 001.02 onward), streamed; one entry per
    transaction of a batch booking, whose total must equal the sum of its transactions."""
    events = etree.iterparse(
        stream,
        events=("start", "end"),
        tag=_CAMT_TAGS,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    paths = None
    container = ""
    pending_all = False
    containers_seen: set[int] = set()
    # What the booked entries of each statement moved, and how many there were: its balances are
    # checked against them when the statement ends.
    moved: dict[int, list] = {}
    index = statements = 0
    try:
        for event, elem in events:
            if paths is None:
                paths, container, pending_all = _camt_document(elem.getroottree().getroot(), header)
            if event == "start":
                continue
            tag = elem.tag
            if tag == paths.ns + "Ntry":
                index += 1
                parent = elem.getparent()
                if id(parent) not in containers_seen:
                    containers_seen.add(id(parent))
                    _camt_container(parent, paths, header)
                entries = _camt_transactions(elem, index, paths, pending_all)
                booked = moved.setdefault(id(parent), [Decimal(0), 0])
                for entry in entries:
                    if not entry.pending:
                        booked[0] += entry.amount
                        booked[1] += 1
                yield from entries
                parent.remove(elem)
            elif tag == container:
                statements += 1
                if id(elem) not in containers_seen:
                    containers_seen.add(id(elem))
                    _camt_container(elem, paths, header)
                total, count = moved.pop(id(elem), (Decimal(0), 0))
                if container == paths.ns + "Stmt":
                    _camt_balance_check(elem, paths, total, count, statements)
        if paths is None:
            root = events.root
            if root is None:
                raise StatementInvalid("line 1: empty file, not a CAMT document.")
            _camt_document(root, header)
    except etree.XMLSyntaxError as exc:
        # The error log holds libxml2's first complaint with its place; the exception's own
        # message is sometimes only the consequence ("no element found" at 0:0).
        errors = exc.error_log.filter_from_errors()
        if errors:
            first = errors[0]
            line, column, message = first.line, first.column, first.message
        else:
            (line, column), message = exc.position, exc.msg
        raise StatementInvalid(f"line {line}, column {column}: malformed XML ({message}).") from None


def _camt_document(root, header: StatementHeader) -> tuple[_Paths, str, bool]:
    _refuse_doctype(root)
    found = _CAMT_DOCUMENT.match(root.tag)
    if not found or int(found.group(2)) < 2:
        raise StatementInvalid(
            f"line {root.sourceline}: <{root.tag}> is not a CAMT.052, CAMT.053 or CAMT.054 Document "
            "(version 001.02 or later)."
        )
    message = found.group(1)
    header.format = f"camt{message}"
    ns = root.tag[: root.tag.index("}") + 1]
    # An intraday report shows what the bank has not booked for the day yet: every entry pends.
    return _Paths(ns), ns + _CAMT_CONTAINERS[message], message == "052"


# Balance types (ISO 20022 external code list): the day's opening booked balance, or the previous
# day's closing one where a bank gives that instead, and the closing booked balance.
_OPENING_BALANCES = ("OPBD", "PRCD")
_CLOSING_BALANCE = "CLBD"


def _camt_balance_check(stmt, paths: _Paths, moved: Decimal, count: int, number: int) -> None:
    """An end-of-day statement's opening balance plus its booked entries equals its closing
    balance (as MT940's :60F: + :61: = :62F:); a statement without both balances is not checked."""
    balances: dict[str, Decimal] = {}
    for bal in stmt.iterchildren(paths.ns + "Bal"):
        code = paths.text(bal, "Tp/CdOrPrtry/Cd") or paths.text(bal, "Tp/CdOrPrtry/Prtry")
        if code in balances or code not in (*_OPENING_BALANCES, _CLOSING_BALANCE):
            continue
        amt = bal.find(paths("Amt"))
        where = f"line {bal.sourceline}: balance {code}"
        if amt is None:
            raise StatementInvalid(f"{where}: missing <Amt>.")
        value = _amount(amt.text, amt.get("Ccy", ""), f"{where} <Amt>")
        indicator = paths.text(bal, "CdtDbtInd")
        if indicator not in ("CRDT", "DBIT"):
            raise StatementInvalid(f"{where} <CdtDbtInd>: {indicator!r} is neither CRDT nor DBIT.")
        balances[code] = value if indicator == "CRDT" else -value
    opening = next((balances[code] for code in _OPENING_BALANCES if code in balances), None)
    closing = balances.get(_CLOSING_BALANCE)
    if opening is None or closing is None:
        return
    if opening + moved != closing:
        ref = paths.text(stmt, "Id")
        raise StatementInvalid(
            f"statement #{number}" + (f" (<Id> {ref})" if ref else "") + f": opening balance {opening} "
            f"plus its {count} booked entries ({moved}) is {opening + moved}, but the closing balance "
            f"(CLBD) is {closing}."
        )


def _camt_container(elem, paths: _Paths, header: StatementHeader) -> None:
    iban = paths.text(elem, "Acct/Id/IBAN") or paths.text(elem, "Acct/Id/Othr/Id")
    if not header.statement_ref:
        header.statement_ref = paths.text(elem, "Id")
        header.iban, header.currency = iban, paths.text(elem, "Acct/Ccy")
    elif iban and iban != header.iban:
        raise StatementInvalid(
            f"line {elem.sourceline}: the file holds statements of two accounts ({header.iban} and {iban}); "
            "import each account's statements separately."
        )


def _camt_amount(elem, paths: _Paths, where: str, flat: dict | None = None) -> tuple[Decimal, str] | None:
    if flat is not None:
        amt = flat.get("Amt")
        if amt is None:
            amt = flat.get("AmtDtls/TxAmt/Amt")
    else:
        amt = elem.find(paths("Amt"))
        if amt is None:
            amt = elem.find(paths("AmtDtls/TxAmt/Amt"))
    if amt is None:
        return None
    currency = amt.get("Ccy", "")
    return _amount(amt.text, currency, f"{where} <Amt>"), currency


def _camt_transactions(ntry, index: int, paths: _Paths, pending_all: bool) -> list[ParsedEntry]:
    text = paths.text
    ref = text(ntry, "NtryRef")
    where = f"element <Ntry> #{index}" + (f" (NtryRef {ref})" if ref else "")
    total = _camt_amount(ntry, paths, where)
    if total is None:
        raise StatementInvalid(f"{where}: missing <Amt>.")
    amount, currency = total
    indicator = text(ntry, "CdtDbtInd")
    if indicator not in ("CRDT", "DBIT"):
        raise StatementInvalid(f"{where} <CdtDbtInd>: {indicator!r} is neither CRDT nor DBIT.")
    status = text(ntry, "Sts/Cd") or text(ntry, "Sts")
    if status == "INFO":
        return []  # information only: not a booking
    if status not in ("BOOK", "PDNG"):
        raise StatementInvalid(f"{where} <Sts>: {status!r} is not BOOK, PDNG or INFO.")
    booking = text(ntry, "BookgDt/Dt") or text(ntry, "BookgDt/DtTm")
    value = text(ntry, "ValDt/Dt") or text(ntry, "ValDt/DtTm")
    if not booking and status == "PDNG" and value:
        booking = value  # a pending entry may have no booking date yet
    if not booking:
        raise StatementInvalid(f"{where}: missing <BookgDt>.")
    base = {
        "booking_date": _iso_date(booking, f"{where} <BookgDt>"),
        "value_date": _iso_date(value, f"{where} <ValDt>") if value else None,
        "currency": currency,
        "pending": pending_all or status == "PDNG",
    }
    reversal = text(ntry, "RvslInd").lower() in ("true", "1")
    returned = text(ntry, "BkTxCd/Domn/Fmly/SubFmlyCd") in _RETURN_SUBFAMILIES
    entry_id = text(ntry, "AcctSvcrRef")
    details = ntry.findall(paths("NtryDtls/TxDtls"))
    flats = [_flatten(tx, paths.ns) for tx in details]
    signed = amount if indicator == "CRDT" else -amount
    if not details:
        info = text(ntry, "AddtlNtryInf")
        return [
            ParsedEntry(
                **base,
                amount=signed,
                bank_transaction_id=entry_id[:100],
                remittance_text=info,
                creditor_reference=_rf_in(info),
                kind="return" if returned else "reversal" if reversal else "transfer",
            )
        ]
    if len(details) == 1:
        return [_camt_transaction(flats[0], base, signed, indicator, entry_id, reversal, returned)]
    amounts = []
    for number, (tx, flat) in enumerate(zip(details, flats, strict=True), start=1):
        found = _camt_amount(tx, paths, f"{where} <TxDtls> #{number}", flat)
        if found is not None and found[1] != currency:
            raise StatementInvalid(
                f"{where} <TxDtls> #{number}: amount in {found[1]}, the booking is in {currency}."
            )
        tx_indicator = _flat_text(flat, "CdtDbtInd") or indicator
        amounts.append(None if found is None else (found[0] if tx_indicator == "CRDT" else -found[0]))
    if all(a is None for a in amounts):
        # A batch whose transactions carry no amounts cannot be split: one entry for the booking.
        first = _camt_transaction(flats[0], base, signed, indicator, entry_id, reversal, returned)
        first.remittance_text = " ".join(
            u.text.strip() for flat in flats for u in flat["RmtInf/Ustrd*"] if u.text
        )
        first.end_to_end_id = first.reference = ""
        return [first]
    if any(a is None for a in amounts):
        missing = ", ".join(f"#{n}" for n, a in enumerate(amounts, start=1) if a is None)
        raise StatementInvalid(
            f"{where}: transactions {missing} of its {len(details)} have no amount; "
            "a batch booking is read only when each transaction has one."
        )
    if sum(amounts) != signed:
        raise StatementInvalid(
            f"{where}: the booking's amount {signed} {currency} differs from the sum of its "
            f"{len(details)} transactions ({sum(amounts)} {currency})."
        )
    # Each transaction of a batch needs its own key: the bank's id of the transaction where each has
    # a distinct one, else the booking's (or transaction's) id with the transaction's position.
    ids = [_flat_text(flat, "Refs/AcctSvcrRef") for flat in flats]
    if not all(ids) or len(set(ids)) != len(ids):
        ids = [f"{own or entry_id}/{n}" if (own or entry_id) else "" for n, own in enumerate(ids, start=1)]
    return [
        _camt_transaction(
            flat,
            base,
            tx_amount,
            "CRDT" if tx_amount > 0 else "DBIT",
            tx_id,
            reversal,
            returned,
            own_id=True,
        )
        for flat, tx_amount, tx_id in zip(flats, amounts, ids, strict=True)
    ]


def _camt_transaction(
    flat, base, amount, indicator, entry_id, reversal, returned, *, own_id=False
) -> ParsedEntry:
    text = _flat_text
    party = "RltdPties/Dbtr" if indicator == "CRDT" else "RltdPties/Cdtr"
    end_to_end = text(flat, "Refs/EndToEndId")
    if end_to_end.upper() == "NOTPROVIDED":
        end_to_end = ""
    unstructured = " ".join(u.text.strip() for u in flat["RmtInf/Ustrd*"] if u.text)
    structured = text(flat, "RmtInf/Strd/CdtrRefInf/Ref")
    remittance = unstructured
    if structured and structured not in unstructured:
        remittance = f"{unstructured} {structured}".strip()
    creditor_reference = _rf_in(structured, unstructured)
    bank_id = entry_id if own_id else (entry_id or text(flat, "Refs/AcctSvcrRef"))
    if "RtrInf" in flat:
        returned = True
    return ParsedEntry(
        **base,
        amount=amount,
        bank_transaction_id=bank_id[:100],
        counterparty_name=(text(flat, party + "/Nm") or text(flat, party + "/Pty/Nm"))[:200],
        counterparty_iban=text(flat, party + "Acct/Id/IBAN")[:34],
        reference=(end_to_end or creditor_reference or structured)[:200],
        remittance_text=remittance,
        end_to_end_id=end_to_end[:200],
        creditor_reference=creditor_reference,
        kind="return" if returned else "reversal" if reversal else "transfer",
    )


# --- MT940 / MT942 ------------------------------------------------------------------------------
# The library's fixes we want (each is off by default to keep its 5.0 output): RC is a debit, ?31 is
# the counterparty's IBAN, a :86: without KREF keeps the :61: reference, long :86: kept whole.
_MT940_OPTIONS = mt940.Options(
    reversal_sign=True,
    applicant_iban=True,
    merge_keeps_values=True,
    case_insensitive_marks=True,
    unbounded_details=True,
    strip_bom=True,
)
_TAG_LINE = re.compile(r"^:(\d{2}[A-Z]?):")
# What may stand before the first :20:: a SWIFT envelope ({1:…}{2:…}{4:), a BIC, the message type.
# ING writes "0000 01INGBNL2AXXXX00001" and "940 00", ABN AMRO its BIC before every statement.
_PREAMBLE_LINE = re.compile(
    r"^(\{.*|[A-Z]{6}[A-Z0-9]{2}(?:[A-Z0-9]{3})?|94[02](?: \d+)?|:94[02]:|0{4} .*|-\}?)$"
)
# Tags of a statement's opening (before the first :61:) and closing, MT940 and MT942.
_MT940_OPENING = {"21", "25", "28", "28C", "60F", "60M", "34F", "13", "13D", "NS"}
_MT940_BODY = {"61", "86", "NS"}
_MT940_CLOSING = {"62F", "62M", "64", "65", "86", "90D", "90C", "NS"}
# A tag after which a line without a tag continues the field.
_MT940_WRAPPING = {"86", "61", "28", "25", "NS", "21", "20"}
_EREF = re.compile(r"EREF\+(\S+)")
_DUTCH_KEYS = re.compile(
    r"/(TRTP|IBAN|BIC|NAME|REMI|EREF|MARF|CSID|ORDP|BENM|CNTP|ADDR|SVCL|PURP|RTRN|ULTC|ULTD|ISDT|CREF)/"
)
# German GVC codes of returned payments (Rücklastschrift, Retoure).
_GERMAN_RETURN_CODES = frozenset({"109", "159", "160", "179"})


def _mt940_text(raw: bytes) -> str:
    if b"\x00" in raw:
        line = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise StatementInvalid(f"line {line}: a NUL byte; an MT940 file is text.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        # SWIFT's character set is ASCII; German and Dutch banks write umlauts in ISO 8859-1.
        text = raw.decode("iso-8859-1")
    # SOH/ETX frame a message in a SWIFT FIN transmission (mBank sends them); they are no content.
    return text.replace("\x01", "").replace("\x03", "")


def _mt940_check_structure(lines: list[str]) -> list[str]:
    """The lines, with :28C: wrapped onto a second line joined; a 400 naming the first line that
    does not belong where it stands (what is not MT940 is refused here, not guessed at)."""
    out: list[str] = []
    phase = "preamble"  # preamble → opening → body → closing → (next :20:) opening …
    last = ""
    blocks = 0
    seen: set[str] = set()

    def finish(number: int) -> None:
        if phase == "preamble":
            return
        for required, name in (("25", ":25:"), ("28", ":28C:")):
            if required not in seen:
                raise StatementInvalid(f"line {number}: the statement before this line has no {name} field.")
        mt942 = "34F" in seen or "90D" in seen or "90C" in seen or "13D" in seen
        if not mt942 and not ({"60F", "60M"} & seen and {"62F", "62M"} & seen):
            raise StatementInvalid(
                f"line {number}: the statement before this line lacks its :60: or :62: balance."
            )

    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or stripped in ("-", "-}") or stripped.startswith("{5:"):
            out.append(line)
            continue
        found = _TAG_LINE.match(stripped)
        if not found:
            if phase in ("preamble", "closing") and _PREAMBLE_LINE.match(stripped):
                out.append(line)
                continue
            if phase != "preamble" and last in _MT940_WRAPPING:
                if last == "28" and out:
                    out[-1] = out[-1].rstrip() + stripped
                else:
                    out.append(line)
                continue
            raise StatementInvalid(f"line {number}: not MT940 ({stripped[:40]!r} is not a field).")
        tag = found.group(1)
        family = tag[:2] if tag[:2] in ("28", "13") else tag
        if tag == "20":
            finish(number)
            phase, seen, blocks = "opening", set(), blocks + 1
        elif phase == "preamble":
            raise StatementInvalid(f"line {number}: not MT940 (the first field must be :20:, not :{tag}:).")
        elif phase == "opening" and tag in _MT940_OPENING:
            pass
        elif phase in ("opening", "body") and tag in _MT940_BODY:
            phase = "body"
        elif phase in ("opening", "body", "closing") and tag in _MT940_CLOSING:
            phase = "closing"
        else:
            expected = {"opening": _MT940_OPENING | _MT940_BODY, "body": _MT940_BODY | _MT940_CLOSING}.get(
                phase, _MT940_CLOSING | {"20"}
            )
            raise StatementInvalid(
                f"line {number}: :{tag}: does not belong here in an MT940 statement (expected one of "
                + ", ".join(f":{t}:" for t in sorted(expected))
                + ")."
            )
        seen.add(family)
        if tag.startswith(("60", "62")):
            seen.add(tag)
        last = family
        out.append(line)
    if not blocks:
        raise StatementInvalid("line 1: not MT940 (no :20: field).")
    finish(len(lines))
    return out


def _account(identification: str, header: StatementHeader) -> None:
    """:25: as IBAN, IBAN + currency, bank code/account or a long account number."""
    parts = identification.split()
    account = parts[0] if parts else ""
    if len(parts) > 1 and is_currency(parts[-1].upper()):
        header.currency = parts[-1].upper()
    if iban_number.is_valid(account):
        header.iban = iban_number.compact(account)
    elif not header.iban:
        header.extra["account"] = account


def _dutch_details(details: str) -> dict:
    """Rabobank/ING/ABN AMRO structured :86: (/TRTP/…/IBAN/…/NAME/…/REMI/…/EREF/…)."""
    parts = _DUTCH_KEYS.split(details.replace("\n", ""))
    fields = {key: value.strip().strip("/") for key, value in zip(parts[1::2], parts[2::2], strict=True)}
    found: dict = {}
    counterparty = fields.get("CNTP", "").split("/") if "CNTP" in fields else []
    found["iban"] = fields.get("IBAN") or (counterparty[0] if counterparty else "")
    found["name"] = fields.get("NAME") or (counterparty[2] if len(counterparty) > 2 else "")
    remittance = fields.get("REMI", "")
    for prefix in ("USTD//", "USTD/", "STRD/CUR/", "STRD//", "STRD/"):
        if remittance.startswith(prefix):
            remittance = remittance[len(prefix) :]
            break
    found["remittance"] = remittance.strip("/ ")
    eref = fields.get("EREF", "")
    found["eref"] = "" if eref.upper() == "NOTPROVIDED" else eref
    trtp = fields.get("TRTP", "").upper()
    found["returned"] = "RTRN" in fields or any(word in trtp for word in ("RETOUR", "STORNO", "TERUGBOEKING"))
    return found


def parse_mt940(stream: IO[bytes], header: StatementHeader) -> Iterator[ParsedEntry]:
    """Entries of an MT940/MT942 file (one or several statements), parsed by the mt-940 library after
    a strict line-level check; each statement's :60: + its :61: lines must equal its :62:."""
    text = _mt940_text(stream.read())
    lines = _mt940_check_structure(text.splitlines())
    statement_line = re.compile(mt940.tags.Statement.pattern, re.VERBOSE | re.IGNORECASE)
    balance_line = re.compile(r"^:6[02345][FM]?:[CD]\d{6}[A-Z]{3}[\d,]+$")
    for number, line in enumerate(lines, start=1):
        if line.startswith(":61:") and not statement_line.match(line[4:]):
            raise StatementInvalid(f"line {number} (:61:): not a valid statement line: {line[:60]!r}.")
        if line.startswith((":60", ":62", ":64", ":65")) and not balance_line.match(
            line.strip().rstrip("-}")
        ):
            raise StatementInvalid(f"line {number}: not a valid balance: {line[:60]!r}.")
    header.format = "mt940"
    try:
        statements = mt940.parse_statements("\n".join(lines), options=_MT940_OPTIONS)
    except Exception as exc:  # the library raises bare RuntimeError/ValueError on bad input
        raise StatementInvalid(f"MT940 could not be parsed: {exc}") from None
    count = 0
    for block, transactions in enumerate(statements, start=1):
        if block == 1:
            header.statement_ref = str(transactions.data.get("transaction_reference", ""))
        _account(str(transactions.data.get("account_identification", "")), header)
        entries = []
        for tx in transactions:
            count += 1
            entries.append(_mt940_entry(tx.data, count))
        _mt940_balance_check(transactions, entries, block)
        yield from entries


def _mt940_balance_check(transactions, entries: list[ParsedEntry], block: int) -> None:
    data = transactions.data
    opening = data.get("final_opening_balance") or data.get("intermediate_opening_balance")
    closing = data.get("final_closing_balance") or data.get("intermediate_closing_balance")
    if opening is None or closing is None:
        return  # MT942 (interim) has no balances to check
    moved = sum((entry.amount for entry in entries), Decimal(0))
    start, end = opening.amount.amount, closing.amount.amount
    if start + moved != end:
        raise StatementInvalid(
            f"statement #{block} (:20: {data.get('transaction_reference', '')}): opening balance {start} "
            f"plus its {len(entries)} entries ({moved}) is {start + moved}, but the closing balance (:62:) "
            f"is {end}."
        )


def _mt940_entry(data: dict, index: int) -> ParsedEntry:
    where = f"transaction #{index} (:61:)"
    money = data.get("amount")
    if money is None:
        raise StatementInvalid(f"{where}: missing amount.")
    currency = str(money.currency or data.get("currency") or "")
    amount = _amount(str(abs(money.amount)), currency, where)
    raw_details = str(data.get("transaction_details") or "")
    dutch = _dutch_details(raw_details) if _DUTCH_KEYS.search(raw_details) else {}
    # The library splits German structured :86: fields (?20 …) into purpose, names and EREF.
    details = dutch.get("remittance") or " ".join(
        str(data[key]).replace("\n", "")
        for key in ("purpose", "additional_purpose", "transaction_details")
        if data.get(key)
    )
    eref = str(data.get("end_to_end_reference") or dutch.get("eref") or "")
    if not eref:
        found = _EREF.search(details)
        eref = found.group(1) if found else ""
    if eref.upper() == "NOTPROVIDED":
        eref = ""
    customer_ref = str(data.get("customer_reference") or "").strip()
    bank_ref = str(data.get("bank_reference") or "").strip()
    booking = data.get("entry_date") or data.get("date")
    creditor_reference = _rf_in(details, customer_ref)
    status = str(data.get("status") or "").upper()
    returned = dutch.get("returned") or str(data.get("transaction_code") or "") in _GERMAN_RETURN_CODES
    name = str(data.get("applicant_name") or dutch.get("name") or "").replace("\n", "")
    counterparty_iban = str(data.get("applicant_iban") or dutch.get("iban") or "").replace(" ", "")
    return ParsedEntry(
        booking_date=date(booking.year, booking.month, booking.day),
        value_date=date(data["date"].year, data["date"].month, data["date"].day),
        amount=amount if money.amount >= 0 else -amount,
        currency=currency,
        bank_transaction_id="" if bank_ref.upper() in ("", "NONREF") else bank_ref[:100],
        counterparty_name=name[:200],
        counterparty_iban=counterparty_iban[:34],
        reference=(eref or creditor_reference or ("" if customer_ref.upper() == "NONREF" else customer_ref))[
            :200
        ],
        remittance_text=details,
        end_to_end_id=eref[:200],
        creditor_reference=creditor_reference,
        kind="return" if returned else "reversal" if status.startswith("R") else "transfer",
    )


# --- CSV ----------------------------------------------------------------------------------------
def parse_csv(stream: IO[bytes], header: StatementHeader, *, profile, currency: str) -> Iterator[ParsedEntry]:
    """Entries of a bank's CSV export read through the account's column profile."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    try:
        yield from _csv_entries(text, header, profile=profile, currency=currency)
    finally:
        # The caller's stream stays open (closing the wrapper would close it): it may read it again.
        text.detach()


def _csv_entries(text: IO[str], header: StatementHeader, *, profile, currency: str) -> Iterator[ParsedEntry]:
    try:
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
    header.format = "csv"
    try:
        for row in reader:
            where = f"line {reader.line_num}"
            if None in row or any(value is None for value in row.values()):
                raise StatementInvalid(f"{where}: wrong number of fields.")
            if any("\x00" in value for value in row.values()):
                raise StatementInvalid(f"{where}: a NUL byte; a CSV statement is text.")
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
    """zip, camt (which message is read from its namespace), mt940 or csv from the first bytes of a
    file, never from its name."""
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    stripped = head.lstrip(b"\xef\xbb\xbf \r\n\t")
    if stripped.startswith(b"<"):
        return "camt"
    if (
        stripped.startswith((b"{1:", b":940:", b":942:"))
        or re.match(rb":\d\d[A-Z]?:", stripped)
        or b"\n:20:" in head
    ):
        return "mt940"
    return "csv"
