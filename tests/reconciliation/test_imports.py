"""Statement imports: the three formats, re-import and overlap idempotency, malformed files
rejected whole, and concurrent imports of one statement creating each entry once."""

import io
import threading
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.actors import Actor
from reconciliation import services
from reconciliation.models import BankEntry, BankStatement
from reconciliation.parsers import ParsedEntry, StatementInvalid
from tests.factories import BankAccountFactory, CsvProfileFactory, TenantFactory
from tests.reconciliation.camt import camt053

SAMPLES = Path(__file__).parent / "samples"


def _import(account, data: bytes, actor, fmt=None):
    return services.statement_import(
        tenant=account.tenant,
        actor=actor,
        bank_account=account,
        stream=io.BytesIO(data),
        format=fmt,
        run_matching=False,
    )


@pytest.fixture
def account(db):
    return BankAccountFactory(tenant=TenantFactory())


def test_camt053_sample_imports_credits_and_debits_but_not_info(account, actor):
    result = _import(account, (SAMPLES / "camt053_sample.xml").read_bytes(), actor)

    entries = {e.bank_transaction_id: e for e in BankEntry.objects.all()}
    assert (result.entry_count, result.new_entry_count) == (3, 3)
    assert result.statement.statement_ref == "20260302-DE89370400440532013000"
    first = entries["COBA2026030200001"]
    assert (first.amount, first.reference, first.counterparty_iban) == (
        Decimal("129.00"),
        "pi_3OqA1B2C3D4E5F",
        "DE02120300000000202051",
    )
    assert "INV-2026-000001" in first.remittance_text
    assert entries["COBA2026030200003"].amount == Decimal("-85.00")


def test_mt940_sample_imports_through_the_library(account, actor):
    result = _import(account, (SAMPLES / "mt940_sample.sta").read_bytes(), actor)

    assert (result.statement.format, result.entry_count) == ("mt940", 3)
    first = BankEntry.objects.get(bank_transaction_id="COBA20260302001")
    assert (first.amount, first.reference, first.counterparty_name) == (
        Decimal("129.00"),
        "pi_3OqA1B2C3D4E5F",
        "Lufthansa Technik AG",
    )
    assert "INV-2026-000001" in first.remittance_text


def test_csv_sample_imports_through_the_accounts_profile(account, actor):
    CsvProfileFactory(bank_account=account)

    result = _import(account, (SAMPLES / "csv_sample.csv").read_bytes(), actor)

    assert (result.statement.format, result.entry_count) == ("csv", 3)
    pending = BankEntry.objects.get(counterparty_name="Eurowings GmbH")
    assert (pending.amount, pending.status) == (Decimal("1250.50"), "pending")
    assert pending.dedup_key.startswith("fp:")


@pytest.mark.parametrize(
    ("name", "fmt"), [("camt053_sample.xml", None), ("mt940_sample.sta", None), ("csv_sample.csv", "csv")]
)
def test_reimporting_a_statement_creates_no_duplicate(account, actor, name, fmt):
    CsvProfileFactory(bank_account=account)
    data = (SAMPLES / name).read_bytes()
    _import(account, data, actor, fmt)

    again = _import(account, data, actor, fmt)

    assert again.new_entry_count == 0
    assert BankEntry.objects.count() == again.entry_count
    assert BankStatement.objects.count() == 2


def test_overlapping_statement_adds_only_the_new_entries(account, actor):
    _import(account, camt053([{"amount": "1.00", "txid": "A"}, {"amount": "2.00", "txid": "B"}]), actor)

    result = _import(
        account, camt053([{"amount": "2.00", "txid": "B"}, {"amount": "3.00", "txid": "C"}]), actor
    )

    assert result.new_entry_count == 1
    assert sorted(BankEntry.objects.values_list("bank_transaction_id", flat=True)) == ["A", "B", "C"]


def test_entries_without_bank_id_are_recognised_by_fingerprint_and_occurrence(account, actor):
    same = {"amount": "10.00", "text": "rent", "date": "2026-03-02"}
    _import(account, camt053([same, same]), actor)

    again = _import(account, camt053([same, same, same]), actor)

    assert again.new_entry_count == 1
    assert BankEntry.objects.count() == 3


MALFORMED = [
    (
        "camt053",
        b"<?xml version='1.0'?><Document xmlns='urn:iso:std:iso:20022:tech:xsd:camt.053.001.08'><Stmt>",
        "line 1",
    ),
    ("camt053", camt053([{"amount": "1.00", "txid": "A"}, {"amount": "abc", "txid": "B"}]), "<Ntry> #2"),
    ("camt053", camt053([{"amount": "1.00", "txid": "A", "indicator": "XXXX"}]), "CdtDbtInd"),
    ("camt053", camt053([{"amount": "1.00", "txid": "A", "date": "2026-13-45"}]), "BookgDt"),
    ("camt053", camt053([{"amount": "1.001", "txid": "A"}]), "decimals"),
    (
        "camt053",
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaa">]><Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"/>',
        "DOCTYPE",
    ),
    ("mt940", (SAMPLES / "mt940_sample.sta").read_bytes().replace(b"CR250,00", b"CRX50,00"), "line 7"),
    ("mt940", (SAMPLES / "mt940_sample.sta").read_bytes().replace(b":62F:", b":99X:"), ":62"),
    (
        "csv",
        (SAMPLES / "csv_sample.csv")
        .read_bytes()
        .replace(b"02.03.2026;02.03.2026;250", b"32.03.2026;02.03.2026;250"),
        "line 3",
    ),
    ("csv", (SAMPLES / "csv_sample.csv").read_bytes().replace(b"Betrag", b"Summe"), "Betrag"),
    ("csv", (SAMPLES / "csv_sample.csv").read_bytes() + b"04.03.2026;04.03.2026\n", "line 5"),
]


@pytest.mark.parametrize(("fmt", "data", "named"), MALFORMED)
def test_malformed_statement_is_rejected_whole_naming_where(account, actor, fmt, data, named):
    CsvProfileFactory(bank_account=account)

    with pytest.raises(StatementInvalid) as caught:
        _import(account, data, actor, fmt)

    assert named in caught.value.detail
    assert BankEntry.objects.count() == 0 and BankStatement.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_imports_of_one_statement_create_each_entry_once():
    account = BankAccountFactory(tenant=TenantFactory())
    data = camt053([{"amount": f"{n}.00", "txid": f"T{n}"} for n in range(1, 201)])
    barrier = threading.Barrier(4)
    errors = []

    def worker():
        try:
            barrier.wait()
            _import(account, data, Actor.system("tests"))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert BankEntry.objects.count() == 200
    assert sum(BankStatement.objects.values_list("new_entry_count", flat=True)) == 200


_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    booking=st.dates(),
    value=st.none() | st.dates(),
    amount=st.decimals(min_value=-(10**9), max_value=10**9, allow_nan=False, allow_infinity=False)
    | st.sampled_from([Decimal("-0.00"), Decimal("1E+2"), Decimal("0.10"), Decimal("100"), Decimal("-5.5")]),
    iban=_TEXT,
    reference=_TEXT,
    remittance=_TEXT,
)
def test_a_new_entry_is_keyed_as_the_staging_sql_keys_it(
    db, booking, value, amount, iban, reference, remittance
):
    # given an entry without a bank transaction id (keyed by the fingerprint of its facts)
    entry = ParsedEntry(
        booking_date=booking,
        value_date=value,
        amount=amount,
        currency="EUR",
        counterparty_iban=iban,
        reference=reference,
        remittance_text=remittance,
    )
    # when the staging table's SQL keys it, as every import did before direct COPY
    keyed = services._INSERT_SQL.split("), unique_keys AS")[0] + ") SELECT dedup_key FROM keyed"  # noqa: S608 - constant SQL
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS recon_import")
        cursor.execute(services._STAGE_SQL)
        cursor.execute(
            "INSERT INTO recon_import (seq, booking_date, value_date, amount, currency, bank_transaction_id, "
            "counterparty_iban, reference, remittance_text) VALUES (1, %s, %s, %s, 'EUR', '', %s, %s, %s)",
            [booking, value, amount, iban, reference, remittance],
        )
        cursor.execute(keyed)
        (sql_key,) = cursor.fetchone()
        cursor.execute("DROP TABLE recon_import")
    # then the key the direct COPY gives it is the same: a re-import through either path finds it
    assert services.first_dedup_key(entry) == sql_key


def test_a_statement_read_by_direct_copy_and_by_staging_keys_entries_alike(account, actor):
    # given a CSV statement without bank ids imported fresh (direct COPY)
    CsvProfileFactory(bank_account=account)
    data = (SAMPLES / "csv_sample.csv").read_bytes()
    first = _import(account, data, actor)
    keys = set(BankEntry.objects.values_list("dedup_key", flat=True))
    # when the same file comes again with one more line (a known entry: read through staging)
    second = _import(account, data + data.splitlines(keepends=True)[-1].replace(b"2026", b"2025"), actor)
    # then only the new line is added
    assert (first.new_entry_count, second.new_entry_count) == (first.entry_count, 1)
    assert keys < set(BankEntry.objects.values_list("dedup_key", flat=True))


def test_control_characters_in_a_value_are_copied_as_written(account, actor):
    # given a CSV export whose texts hold control characters (rows are built with such characters
    # standing for tabs, row ends and NULLs; a value holding one must come through unchanged)
    CsvProfileFactory(bank_account=account)
    data = (SAMPLES / "csv_sample.csv").read_bytes()
    data = data.replace(b"Payment INV-2026-000001", b"Pay\x01ment\x02 INV\t1").replace(
        b"Eurowings GmbH", b"Euro\x02wings"
    )
    # when it is imported (directly by COPY: a new statement)
    result = _import(account, data, actor)
    # then each value is stored as it was written, the other entries too
    assert result.new_entry_count == 3
    assert (
        BankEntry.objects.get(bank_transaction_id="COBA20260302001").remittance_text
        == "Pay\x01ment\x02 INV\t1"
    )
    pending = BankEntry.objects.get(bank_transaction_id="")
    assert (pending.counterparty_name, pending.value_date is not None) == ("Euro\x02wings", True)
    assert BankEntry.objects.get(bank_transaction_id="COBA20260302002").remittance_text == (
        "Sammelzahlung INV-2026-000002, INV-2026-000003"
    )


def _five(**fifth) -> bytes:
    rows = [{"amount": f"{n}.00", "txid": f"BATCH-{n}"} for n in range(1, 5)]
    return camt053([*rows, {"amount": "5.00", "txid": "BATCH-5", **fifth}])


def test_a_statement_sent_in_several_batches_is_imported_whole_and_once(account, actor, monkeypatch):
    # given batches of two rows: three COPYs, the first ones sent while the rest is parsed
    monkeypatch.setattr(services, "_COPY_BATCH_ROWS", 2)

    first = _import(account, _five(), actor)
    again = _import(account, _five(), actor)

    assert (first.new_entry_count, again.new_entry_count) == (5, 0)
    assert sorted(BankEntry.objects.values_list("amount", flat=True)) == [Decimal(n) for n in range(1, 6)]


def test_a_defect_after_batches_were_sent_imports_nothing(account, actor, monkeypatch):
    monkeypatch.setattr(services, "_COPY_BATCH_ROWS", 2)

    with pytest.raises(StatementInvalid) as caught:
        _import(account, _five(amount="5.001"), actor)

    assert "<Ntry> #5" in caught.value.detail
    assert (BankEntry.objects.count(), BankStatement.objects.count()) == (0, 0)


def test_a_bank_id_repeated_in_a_later_batch_is_kept_as_its_own_entry(account, actor, monkeypatch):
    # given the fifth entry repeating the first one's bank reference (the direct COPY meets its key)
    monkeypatch.setattr(services, "_COPY_BATCH_ROWS", 2)

    result = _import(account, _five(txid="BATCH-1"), actor)

    # then the file is read through the staging table, which keys the repeat by its occurrence
    assert result.new_entry_count == 5
    assert sorted(BankEntry.objects.values_list("dedup_key", flat=True))[:2] == ["id:BATCH-1", "id:BATCH-1:2"]


def test_text_with_tabs_newlines_and_backslashes_is_copied_as_written(account, actor):
    text = "Invoice\tINV-1\\2026\nsecond line\r\nthird \\N"

    _import(account, camt053([{"amount": "9.00", "txid": "ESC-1", "text": text, "name": "A\\B\tC"}]), actor)

    entry = BankEntry.objects.get()
    assert (entry.remittance_text, entry.counterparty_name) == (text.replace("\r\n", "\n"), "A\\B\tC")
