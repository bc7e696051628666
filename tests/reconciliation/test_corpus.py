"""Real statements published by banks and open-source finance projects, fetched from the package
registry at pinned versions (never committed: their licences differ) and imported through the service.

Sources: the mt-940 project's test data (Rabobank, SNS, ING, ABN AMRO, Knab, Triodos, PostFinance,
mBank, German SEPA statements from betterplace, hand-made edge cases) and the Odoo Community
Association's CAMT importer (ABN AMRO camt.053.001.02, a Swiss camt.053.001.04 batch booking,
camt.054.001.04, a zip of statements). The expected counts and sums were written by hand from the
files (the :61: lines, the OCA project's own golden data), not from this parser's output.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest
from django.db.models import Sum

from reconciliation import services
from reconciliation.models import BankEntry, BankStatement
from reconciliation.parsers import StatementInvalid
from tests.factories import BankAccountFactory, TenantFactory

CACHE = Path(os.environ.get("LEDGERFLOW_STATEMENT_CORPUS", Path.home() / ".cache" / "ledgerflow-statements"))
# (requirement, pip download options, archive file name)
PACKAGES = {
    "mt940": ("mt-940==4.23.0", ["--no-binary", ":all:"], "mt-940-4.23.0.tar.gz"),
    "oca": (
        "odoo-addon-account-statement-import-camt==16.0.1.0.3.1",
        [],
        "odoo_addon_account_statement_import_camt-16.0.1.0.3.1-py3-none-any.whl",
    ),
}
MT940_DIR = "mt-940-4.23.0/mt940_tests/"
OCA_DIR = "odoo/addons/account_statement_import_camt/test_files/"


def _download(source: str) -> Path:
    requirement, options, archive = PACKAGES[source]
    target = CACHE / archive
    if not target.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--disable-pip-version-check",
                *options,
                requirement,
                "-d",
                str(CACHE),
            ],  # fmt: skip
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0 or not target.exists():
            pytest.skip(f"pip download {requirement} failed (no package registry?): {done.stderr[-300:]}")
    return target


def _sample(source: str, name: str) -> bytes:
    archive = _download(source)
    if source == "mt940":
        with tarfile.open(archive) as tar:
            return tar.extractfile(MT940_DIR + name).read()
    with zipfile.ZipFile(archive) as wheel:
        return wheel.read(OCA_DIR + name)


def _import(account, data: bytes, actor, fmt=None):
    return services.statement_import(
        tenant=account.tenant,
        actor=actor,
        bank_account=account,
        stream=io.BytesIO(data),
        file_name="corpus",
        format=fmt,
        run_matching=False,
    )


IBAN_NL = "NL77ABNA0574908765"
IBAN_CH = "CH1111000000123456789"
IBAN_PL = "PL29114010810000267002001002"
DEFAULT = "DE89370400440532013000"

# source, file, currency, account IBAN, entries, credits, debits, reversals + returns
ACCEPTED = [
    # 2 reversed credits (RC) and 17 returns (GVC 159/109 in :86:)
    ("mt940", "betterplace/sepa_mt9401.sta", "EUR", DEFAULT, 97, "5188474.94", "-14457610.84", 19),
    ("mt940", "betterplace/with_binary_character.sta", "EUR", DEFAULT, 4, "14215.30", "-193282.05", 0),
    ("mt940", "jejik/generic.sta", "EUR", DEFAULT, 2, "0", "-20.00", 0),
    ("mt940", "jejik/rabobank-iban.sta", "EUR", DEFAULT, 4, "0", "-70.00", 0),
    ("mt940", "jejik/sns.sta", "EUR", DEFAULT, 2, "0", "-25.00", 0),
    ("mt940", "mBank/mt940.sta", "PLN", IBAN_PL, 3, "0.03", "0", 0),
    ("mt940", "mBank/mt942.sta", "PLN", IBAN_PL, 3, "0.03", "0", 0),
    ("mt940", "self-provided/mt942.sta", "EUR", DEFAULT, 1, "0", "-0.42", 0),
    ("oca", "test-camt053-txdtls", "CHF", IBAN_CH, 2, "3483.00", "0", 0),
    ("oca", "test-camt054", "EUR", IBAN_NL, 1, "5.00", "0", 0),
    ("oca", "test-camt053-no-ntry", "EUR", IBAN_NL, 0, "0", "0", 0),
]


@pytest.mark.parametrize(
    ("source", "name", "currency", "iban", "count", "credits", "debits", "reversals"),
    ACCEPTED,
    ids=[f"{s}:{n}" for s, n, *_ in ACCEPTED],
)
def test_public_sample_statement_imports_every_entry_to_the_cent_and_once(
    db, actor, source, name, currency, iban, count, credits, debits, reversals
):
    account = BankAccountFactory(tenant=TenantFactory(), iban=iban, currency=currency)
    data = _sample(source, name)

    result = _import(account, data, actor)

    entries = BankEntry.objects.filter(bank_account=account)
    assert (result.entry_count, result.new_entry_count, entries.count()) == (count, count, count)
    assert (entries.filter(amount__gt=0).aggregate(s=Sum("amount"))["s"] or Decimal(0)) == Decimal(credits)
    assert (entries.filter(amount__lt=0).aggregate(s=Sum("amount"))["s"] or Decimal(0)) == Decimal(debits)
    assert entries.exclude(kind="transfer").count() == reversals

    again = _import(account, data, actor)

    assert again.new_entry_count == 0
    assert entries.count() == count


def test_swiss_batch_booking_becomes_one_entry_per_transaction_with_its_own_reference(db, actor):
    account = BankAccountFactory(tenant=TenantFactory(), iban=IBAN_CH, currency="CHF")

    _import(account, _sample("oca", "test-camt053-txdtls"), actor)

    entries = sorted(BankEntry.objects.filter(bank_account=account), key=lambda e: e.amount)
    assert [(e.amount, e.counterparty_iban, e.reference) for e in entries] == [
        (Decimal("1296.00"), "CH3333000000123456789", "302388292000022222222222222"),
        (Decimal("2187.00"), "CH2222000000123456789", "302388292000011111111111111"),
    ]
    assert all(e.counterparty_name == "Banque Cantonale Vaudoise" for e in entries)


def test_zip_of_camt_statements_is_read_from_content_and_refused_whole_for_its_member_that_does_not_add_up(
    db, actor
):
    account = BankAccountFactory(tenant=TenantFactory(), iban=IBAN_NL, currency="EUR")

    # given the archive under a name that says nothing about its content, whose second day
    # (2014-03-05) does not add up: 15568.27 + 57.01 is not its closing 15121.12
    with pytest.raises(StatementInvalid) as caught:
        _import(account, _sample("oca", "test-camt053.zip"), actor)

    # then its members were read as CAMT, the one that does not add up is named, nothing is written
    assert caught.value.detail.startswith(
        "test-camt053_02.xml in the archive: statement #1 (<Id> 1234Test/2)"
    )
    assert "closing balance (CLBD) is 15121.12" in caught.value.detail
    assert BankEntry.objects.count() == 0 and BankStatement.objects.count() == 0


# source, file, what the 400 names. Public samples that are anonymised so that their balances no longer
# add up are refused by the balance check, as a real statement that does not add up must be.
REFUSED = [
    ("mt940", "betterplace/sepa_snippet_broken.sta", None, "line 6: :25: does not belong here"),
    ("mt940", "self-provided/invalid_statement.sta", "mt940", "line 1: not MT940"),
    ("mt940", "betterplace/currency_in_25.sta", None, "line 1: not MT940"),
    ("mt940", "self-provided/raphaelm.sta", None, "line 18: not a valid balance"),
    ("mt940", "jejik/ing.sta", None, "closing balance (:62:) is 3.47"),
    ("mt940", "jejik/abnamro.sta", None, "closing balance (:62:) is 876.84"),
    ("mt940", "jejik/knab.sta", None, "statement #2 (:20: B4G30MS9D00A003D)"),
    ("mt940", "jejik/triodos.sta", None, "closing balance (:62:) is 4370.79"),
    ("mt940", "jejik/postfinance.sta", None, "closing balance (:62:) is 159.6"),
    ("mt940", "jejik/rabobank.sta", None, "closing balance (:62:) is 395.82"),
    # OPBD 15568.27 − 754.25 − 664.05 + 1405.31 is 15555.28, not its CLBD 15121.12
    (
        "oca",
        "test-camt053",
        None,
        "statement #1 (<Id> 1234Test/1): opening balance 15568.27 plus its 4 booked",
    ),
]


@pytest.mark.parametrize(("source", "name", "fmt", "named"), REFUSED, ids=[n for _, n, _, _ in REFUSED])
def test_known_bad_public_sample_is_refused_naming_where_and_imports_nothing(
    db, actor, source, name, fmt, named
):
    account = BankAccountFactory(tenant=TenantFactory(), currency="CHF" if "postfinance" in name else "EUR")

    with pytest.raises(StatementInvalid) as caught:
        _import(account, _sample(source, name), actor, fmt)

    assert named in caught.value.detail
    assert BankEntry.objects.count() == 0 and BankStatement.objects.count() == 0


def test_a_statement_of_unknown_shape_is_not_taken_for_mt940_or_imported(db, actor):
    account = BankAccountFactory(tenant=TenantFactory())

    with pytest.raises(Exception) as caught:
        _import(account, _sample("mt940", "self-provided/invalid_statement.sta"), actor)

    assert getattr(caught.value, "status", None) == 400 or "CSV" in str(caught.value)
    assert BankEntry.objects.count() == 0
