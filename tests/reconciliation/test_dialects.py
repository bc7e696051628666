"""Statement dialects as banks write them: CAMT batch bookings, camt.052/054 and namespace versions,
MT940 :25: forms, reversal marks, wrapped :28C:, several statements per file, Dutch :86:, balance
checks, and zip archives imported all or nothing."""

import io
import zipfile
from decimal import Decimal

import pytest

from reconciliation import services
from reconciliation.models import BankEntry, BankStatement, Reconciliation
from reconciliation.parsers import StatementInvalid
from tests.factories import BankAccountFactory, TenantFactory

IBAN = "DE89370400440532013000"


def _import(account, data: bytes, actor):
    return services.statement_import(
        tenant=account.tenant, actor=actor, bank_account=account, stream=io.BytesIO(data), run_matching=False
    )


@pytest.fixture
def account(db):
    return BankAccountFactory(tenant=TenantFactory(), iban=IBAN)


def _tx(amount, e2e, name, iban, text="", rf=""):
    strd = f"<Strd><CdtrRefInf><Ref>{rf}</Ref></CdtrRefInf></Strd>" if rf else ""
    return (
        f'<TxDtls><Refs><EndToEndId>{e2e}</EndToEndId></Refs><Amt Ccy="EUR">{amount}</Amt>'
        f"<RltdPties><Dbtr><Pty><Nm>{name}</Nm></Pty></Dbtr><DbtrAcct><Id><IBAN>{iban}</IBAN></Id></DbtrAcct>"
        f"</RltdPties><RmtInf><Ustrd>{text}</Ustrd>{strd}</RmtInf></TxDtls>"
    )


def _camt(entries: str, *, message="053", version="08", container="Stmt", root="BkToCstmrStmt") -> bytes:
    return (
        f'<?xml version="1.0"?><Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.{message}.001.{version}">'
        f"<{root}><{container}><Id>S-1</Id><Acct><Id><IBAN>{IBAN}</IBAN></Id><Ccy>EUR</Ccy></Acct>{entries}"
        f"</{container}></{root}></Document>"
    ).encode()


def _ntry(amount, details, *, ref="B1", status="BOOK", indicator="CRDT", reversal=False):
    rvsl = "<RvslInd>true</RvslInd>" if reversal else ""
    return (
        f'<Ntry><Amt Ccy="EUR">{amount}</Amt><CdtDbtInd>{indicator}</CdtDbtInd>{rvsl}<Sts><Cd>{status}</Cd></Sts>'
        f"<BookgDt><Dt>2026-03-02</Dt></BookgDt><ValDt><Dt>2026-03-02</Dt></ValDt><AcctSvcrRef>{ref}</AcctSvcrRef>"
        f"<NtryDtls>{details}</NtryDtls></Ntry>"
    )


BATCH = _ntry(
    "350.00",
    _tx("100.00", "E2E-1", "Lufthansa", "DE02120300000000202051", rf="RF18539007547034")
    + _tx("200.00", "E2E-2", "Condor", "DE75512108001245126199", text="INV-7")
    + _tx("50.00", "NOTPROVIDED", "Eurowings", "DE12500105170648489890", text="thanks"),
)


def test_a_batch_booking_becomes_one_entry_per_transaction(account, actor):
    result = _import(account, _camt(BATCH), actor)

    assert result.entry_count == 3
    rows = list(
        BankEntry.objects.order_by("amount").values_list(
            "amount", "end_to_end_id", "creditor_reference", "counterparty_name", "counterparty_iban"
        )
    )
    assert rows == [
        (Decimal("50.00"), "", "", "Eurowings", "DE12500105170648489890"),
        (Decimal("100.00"), "E2E-1", "RF18539007547034", "Lufthansa", "DE02120300000000202051"),
        (Decimal("200.00"), "E2E-2", "", "Condor", "DE75512108001245126199"),
    ]
    assert _import(account, _camt(BATCH), actor).new_entry_count == 0


def test_a_batch_whose_transactions_do_not_add_up_is_refused_naming_the_entry(account, actor):
    bad = BATCH.replace('<Amt Ccy="EUR">350.00</Amt>', '<Amt Ccy="EUR">351.00</Amt>')

    with pytest.raises(StatementInvalid) as caught:
        _import(account, _camt(_ntry("1.00", _tx("1.00", "A", "A", IBAN)) + bad), actor)

    assert "<Ntry> #2" in caught.value.detail and "350.00" in caught.value.detail
    assert BankEntry.objects.count() == 0


@pytest.mark.parametrize("version", ["02", "04", "06", "10", "13"])
def test_camt053_namespace_versions_from_001_02_are_read(account, actor, version):
    assert _import(account, _camt(BATCH, version=version), actor).statement.format == "camt053"


def test_camt052_intraday_entries_are_pending_and_camt054_notifications_are_read(account, actor):
    report = _import(account, _camt(BATCH, message="052", container="Rpt", root="BkToCstmrAcctRpt"), actor)
    notification = _import(
        account,
        _camt(
            _ntry("9.00", _tx("9.00", "N", "N", IBAN), ref="N1"),
            message="054",
            container="Ntfctn",
            root="BkToCstmrDbtCdtNtfctn",
        ),
        actor,
    )

    assert (report.statement.format, notification.statement.format) == ("camt052", "camt054")
    assert set(BankEntry.objects.filter(statement=report.statement).values_list("status", flat=True)) == {
        "pending"
    }
    assert BankEntry.objects.get(statement=notification.statement).status == "cleared"


def test_a_camt_reversal_is_never_matched_as_a_payment_but_recorded_against_what_it_reverses(books):
    invoice = books.invoice("100.00")
    books.payment("100.00", invoice=invoice, rail="pi_r")
    books.import_camt([{"amount": "100.00", "ref": "pi_r", "txid": "C1"}])
    books.run()
    original = BankEntry.objects.get(bank_transaction_id="C1")

    # when the bank takes the credit back
    reversal = _ntry(
        "100.00", _tx("100.00", "pi_r", "Customer", IBAN), ref="R1", indicator="DBIT", reversal=True
    )
    _import(books.account, _camt(reversal), books.actor)
    books.run()

    entry = BankEntry.objects.get(bank_transaction_id="R1")
    assert (entry.kind, entry.amount, entry.match_status) == ("reversal", Decimal("-100.00"), "discrepancy")
    found = Reconciliation.objects.get(bank_entry=entry)
    assert (found.discrepancy_kind, found.invoice_id) == ("reversal", invoice.pk)
    assert found.note == f"reverses bank entry {original.pk}"


MT940 = """:20:STMT-1
:25:NL34RABO0142623393 EUR
:28C:00061/
001
:60F:C260301EUR1000,00
:61:2603020302C129,00NTRFNONREF//RABO1
:86:/TRTP/SEPA OVERBOEKING/IBAN/NL02ABNA0123456789/BIC/ABNANL2A/NAME/Jansen B.V./REMI/USTD//Factuur INV-9
/EREF/E2E-9/
:61:2603020302RC29,00NTRFNONREF//RABO2
:86:/TRTP/TERUGBOEKING/REMI/USTD//storno/
:62F:C260302EUR1100,00
-
:20:STMT-2
:25:NL34RABO0142623393 EUR
:28C:00062/001
:60F:C260302EUR1100,00
:61:2603030303D100,00NTRFNONREF//RABO3
:86:?20Miete?32Vermieter GmbH
:62F:C260303EUR1000,00
-
"""


def test_mt940_dialects_iban_with_currency_wrapped_28c_reversal_sign_dutch_86_and_two_statements(db, actor):
    account = BankAccountFactory(tenant=TenantFactory(), iban="NL34RABO0142623393")

    result = _import(account, MT940.encode(), actor)

    assert result.entry_count == 3
    first, reversal, rent = (BankEntry.objects.get(bank_transaction_id=f"RABO{n}") for n in (1, 2, 3))
    assert (first.amount, first.counterparty_name, first.counterparty_iban, first.end_to_end_id) == (
        Decimal("129.00"),
        "Jansen B.V.",
        "NL02ABNA0123456789",
        "E2E-9",
    )
    assert first.remittance_text == "Factuur INV-9"
    # RC is a reversed credit: money leaving the account
    assert (reversal.amount, reversal.kind) == (Decimal("-29.00"), "return")
    assert rent.amount == Decimal("-100.00")


def test_mt940_whose_balances_do_not_add_up_is_refused(db, actor):
    account = BankAccountFactory(tenant=TenantFactory(), iban="NL34RABO0142623393")

    with pytest.raises(StatementInvalid) as caught:
        _import(account, MT940.replace(":62F:C260303EUR1000,00", ":62F:C260303EUR1000,01").encode(), actor)

    assert "statement #2 (:20: STMT-2)" in caught.value.detail
    assert BankEntry.objects.count() == 0


def test_mt940_bank_code_and_long_account_forms_of_25_are_not_compared_as_iban(db, actor):
    account = BankAccountFactory(tenant=TenantFactory(), iban="NL34RABO0142623393")
    text = MT940.replace("NL34RABO0142623393 EUR", "37040044/05320130001234567890")

    assert _import(account, text.encode(), actor).entry_count == 3


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def test_a_zip_with_one_bad_member_imports_nothing_and_names_the_member(account, actor):
    good = _camt(BATCH)
    bad = _camt(BATCH.replace("350.00", "351.00"))

    with pytest.raises(StatementInvalid) as caught:
        _import(account, _zip({"a.xml": good, "b.txt": bad}), actor)

    assert caught.value.detail.startswith("b.txt in the archive:")
    assert (BankEntry.objects.count(), BankStatement.objects.count()) == (0, 0)


def test_a_zip_bomb_is_refused_before_it_inflates(account, actor, monkeypatch):
    monkeypatch.setattr(services, "ARCHIVE_MAX_MEMBER_BYTES", 1 << 20)

    with pytest.raises(StatementInvalid) as caught:
        _import(account, _zip({"bomb.xml": b"<" + b" " * (8 << 20)}), actor)

    assert "bomb.xml: inflates past" in caught.value.detail
    assert BankStatement.objects.count() == 0


def _bal(code: str, amount: str, indicator: str = "CRDT") -> str:
    return (
        f'<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">{amount}</Amt>'
        f"<CdtDbtInd>{indicator}</CdtDbtInd><Dt><Dt>2026-03-02</Dt></Dt></Bal>"
    )


DEBIT = _ntry("85.00", _tx("85.00", "E2E-9", "Fuel", "DE12500105170648489890"), ref="B2", indicator="DBIT")


def test_a_camt053_whose_balances_do_not_add_up_is_refused_naming_the_statement(account, actor):
    # given opening 1000.00 + 350.00 − 85.00 = 1265.00, but a closing balance of 1266.00
    data = _camt(_bal("OPBD", "1000.00") + _bal("CLBD", "1266.00") + BATCH + DEBIT)

    with pytest.raises(StatementInvalid) as caught:
        _import(account, data, actor)

    assert caught.value.detail == (
        "statement #1 (<Id> S-1): opening balance 1000.00 plus its 4 booked entries (265.00) is 1265.00, "
        "but the closing balance (CLBD) is 1266.00."
    )
    assert (BankEntry.objects.count(), BankStatement.objects.count()) == (0, 0)


def test_a_camt053_balance_check_counts_booked_entries_from_the_opening_or_previous_closing(account, actor):
    # given the previous day's closing balance (a debit) instead of an opening one, a pending entry and
    # an information-only one, neither of which is in the booked balance
    pending = _ntry(
        "99.00", _tx("99.00", "E2E-P", "Later", "DE12500105170648489890"), ref="B3", status="PDNG"
    )
    info = _ntry("5.00", _tx("5.00", "E2E-I", "Info", "DE12500105170648489890"), ref="B4", status="INFO")
    data = _camt(_bal("PRCD", "10.00", "DBIT") + _bal("CLBD", "255.00") + BATCH + DEBIT + pending + info)

    result = _import(account, data, actor)

    # −10.00 + 350.00 − 85.00 = 255.00
    assert result.entry_count == 5
    assert BankEntry.objects.filter(status="pending").count() == 1
