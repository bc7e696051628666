"""Statement files a client can send that must never become a 500 or an imported entry: malformed XML
mid-file, a DOCTYPE placed late, entity expansion (billion laughs), external entities (XXE), NUL bytes
in MT940. Each is a 400 problem naming where, and the database is as it was (rows counted)."""

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from audit.models import Event
from reconciliation.models import BankEntry, BankStatement
from tests.reconciliation.camt import camt053

SAMPLES = Path(__file__).parent / "samples"
CAMT_HEAD = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt><Stmt><Id>S</Id>'
    b"<Acct><Id><IBAN>DE89370400440532013000</IBAN></Id><Ccy>EUR</Ccy></Acct>"
)


def _counts():
    return (BankEntry.objects.count(), BankStatement.objects.count(), Event.objects.count())


def _late_doctype() -> bytes:
    # 70 KB of comment before the DOCTYPE: past any guard that looks at the first chunk only.
    return (
        b'<?xml version="1.0"?><!--' + b"x" * 70_000 + b'-->\n<!DOCTYPE Document [<!ENTITY who "Evil Corp">]>'
        b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt><Stmt><Id>S</Id>'
        b'<Ntry><Amt Ccy="EUR">1.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>'
        b"<BookgDt><Dt>2026-03-02</Dt></BookgDt><NtryDtls><TxDtls><RltdPties><Dbtr><Pty><Nm>&who;</Nm></Pty>"
        b"</Dbtr></RltdPties></TxDtls></NtryDtls></Ntry></Stmt></BkToCstmrStmt></Document>"
    )


def _billion_laughs() -> bytes:
    entities = b'<!ENTITY lol0 "lol">' + b"".join(
        b'<!ENTITY lol%d "%s">' % (n, b"".join(b"&lol%d;" % (n - 1) for _ in range(10))) for n in range(1, 10)
    )
    return (
        b'<?xml version="1.0"?><!DOCTYPE Document [' + entities + b"]>"
        b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt><Stmt><Id>&lol9;</Id>'
        b"</Stmt></BkToCstmrStmt></Document>"
    )


def _xxe() -> bytes:
    return (
        b'<?xml version="1.0"?><!DOCTYPE Document [<!ENTITY secret SYSTEM "file:///etc/passwd">]>'
        b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt><Stmt><Id>&secret;</Id>'
        b"</Stmt></BkToCstmrStmt></Document>"
    )


def _malformed_mid_file() -> bytes:
    good = camt053([{"amount": f"{n}.00", "txid": f"T{n}"} for n in range(1, 400)])
    # A broken tag well past the first 64 KB read, after hundreds of good entries.
    cut = good.rindex(b"<Ntry>")
    return good[:cut] + b"<Ntry><Amt Ccy='EUR'>1.00</Amt></Ntr>" + good[cut:]


def _mt940_with_nul() -> bytes:
    return (SAMPLES / "mt940_sample.sta").read_bytes().replace(b"Lufthansa", b"Luft\x00hansa")


HOSTILE = [
    ("malformed XML mid-file", _malformed_mid_file, "line"),
    ("DOCTYPE after 64 KB", _late_doctype, "DOCTYPE"),
    ("billion laughs", _billion_laughs, "DOCTYPE"),
    ("external entity", _xxe, "DOCTYPE"),
    ("NUL byte in MT940", _mt940_with_nul, "line 6"),
    ("undeclared entity", lambda: CAMT_HEAD + b"<Id>&nope;</Id></Stmt></BkToCstmrStmt></Document>", "line 1"),
]


@pytest.mark.parametrize(("case", "make", "named"), HOSTILE, ids=[case for case, _, _ in HOSTILE])
def test_hostile_statement_file_is_a_400_problem_naming_where_and_writes_nothing(
    api, books, case, make, named
):
    data = make()
    before = _counts()

    response = api.post(
        "/api/v1/bank-statements",
        {"bankAccount": books.account.pk, "file": SimpleUploadedFile("statement.dat", data)},
        format="multipart",
    )

    assert response.status_code == 400, (case, response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/problem+json")
    assert named in response.json()["detail"], response.json()
    assert _counts() == before
    assert not BankEntry.objects.filter(counterparty_name__contains="Evil").exists()
