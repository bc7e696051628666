"""A small CAMT.053 writer for tests: one <Ntry> per dict."""

from xml.sax.saxutils import escape

IBAN = "DE89370400440532013000"


def camt053(entries: list[dict], *, statement_id: str = "STMT-1", iban: str = IBAN) -> bytes:
    rows = []
    for n, e in enumerate(entries, start=1):
        txid = f"<AcctSvcrRef>{escape(e['txid'])}</AcctSvcrRef>" if e.get("txid") else ""
        rows.append(
            f"""<Ntry><NtryRef>{n}</NtryRef><Amt Ccy="{e.get("currency", "EUR")}">{e["amount"]}</Amt>
<CdtDbtInd>{e.get("indicator", "CRDT")}</CdtDbtInd><Sts><Cd>{e.get("status", "BOOK")}</Cd></Sts>
<BookgDt><Dt>{e.get("date", "2026-03-02")}</Dt></BookgDt><ValDt><Dt>{e.get("date", "2026-03-02")}</Dt></ValDt>
{txid}<NtryDtls><TxDtls><Refs><EndToEndId>{escape(e.get("ref", "NOTPROVIDED"))}</EndToEndId></Refs>
<RltdPties><Dbtr><Pty><Nm>{escape(e.get("name", "Customer"))}</Nm></Pty></Dbtr></RltdPties>
<RmtInf><Ustrd>{escape(e.get("text", ""))}</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>"""
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt><Stmt>'
        f"<Id>{statement_id}</Id><Acct><Id><IBAN>{iban}</IBAN></Id><Ccy>EUR</Ccy></Acct>"
        + "".join(rows)
        + "</Stmt></BkToCstmrStmt></Document>"
    ).encode()
