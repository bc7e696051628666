"""Write-offs apply adjustments through invoicing's set-based service, never by writing invoicing's
tables themselves (the rule for applying an adjustment lives in invoicing alone)."""

from __future__ import annotations

import re
from pathlib import Path

import writeoffs

# SQL naming an invoicing table as the target of a write, or an ORM write on an invoicing model.
_SQL_WRITE = re.compile(r"(UPDATE|INSERT\s+INTO|DELETE\s+FROM)\s+invoicing_\w+|[\"']invoicing_\w+[\"']\s*,", re.I)
_ORM_WRITE = re.compile(
    r"\b(Invoice|InvoiceItem|TaxItem|InvoiceAdjustment)\.objects\b[^\n]*\.(update|bulk_create|bulk_update|create|delete)\("
)


def test_writeoffs_write_no_invoicing_table():
    offences = []
    for path in Path(writeoffs.__file__).parent.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        text = path.read_text()
        offences += [f"{path.name}: {m.group(0)}" for pattern in (_SQL_WRITE, _ORM_WRITE) for m in pattern.finditer(text)]
    assert offences == []
