"""Where write-off adjustments are applied, and the one rule for choosing them.

The rule: a positive balance is brought to zero by credits on lines (invoice items and tax items)
whose available-to-credit amount is positive, a negative balance by charges on lines whose amount
is negative, never the other way round (crediting a negative line would raise what the customer
owes on it, charging a positive line would bill more than it ever charged). The fewest adjustments:
the largest usable amounts first, each line taking min(|available|, |remaining|), until the balance
is zero. A plan that cannot reach zero is refused before anything is applied, and the invoice is
recorded as failed with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from core.errors import ApplicationError
from core.money import ZERO

CREDIT = "Credit"
CHARGE = "Charge"


class WriteOffFailed(ApplicationError):
    """This invoice cannot be written off (the others go on)."""

    code = "write-off-failed"
    title = "Write-off failed"


@dataclass(frozen=True, slots=True)
class Line:
    # "item-12" / "tax-7" locally, the provider's own id remotely: part of the idempotency key
    ref: str
    kind: str  # "InvoiceDetail" (an invoice item) or "Tax"
    available: Decimal
    pk: int | None = None


@dataclass(frozen=True, slots=True)
class PlannedAdjustment:
    line: Line
    type: str  # CREDIT lowers the balance, CHARGE raises it
    amount: Decimal  # always positive


@dataclass(frozen=True, slots=True)
class InvoiceResult:
    status: str  # "succeeded" or "skipped" (balance already zero)
    written_off: Decimal = ZERO  # signed: what was taken off the balance
    adjustments: int = 0


def plan_adjustments(balance: Decimal, lines: list[Line]) -> list[PlannedAdjustment]:
    """The fewest adjustments that bring `balance` to exactly zero under the rule above."""
    if balance == ZERO:
        return []
    positive = balance > ZERO
    usable = [line for line in lines if (line.available > ZERO if positive else line.available < ZERO)]
    # largest magnitude first (the fewest adjustments); ties: invoice items before tax items, then
    # by reference, so a retry plans the same keys
    usable.sort(key=lambda line: (-abs(line.available), line.kind != "InvoiceDetail", line.ref))
    remaining = abs(balance)
    planned = []
    for line in usable:
        if remaining == ZERO:
            break
        amount = min(abs(line.available), remaining)
        planned.append(PlannedAdjustment(line=line, type=CREDIT if positive else CHARGE, amount=amount))
        remaining -= amount
    if remaining != ZERO:
        sign = "positive" if positive else "negative"
        kind = "credits" if positive else "charges"
        raise WriteOffFailed(
            f"The lines' available amounts cannot bring the balance {balance} to zero ({remaining} would remain): "
            f"a {sign} balance takes {kind} on {sign} lines only.",
            extra={"remaining": str(remaining)},
        )
    return planned


def idempotency_key(*, invoice_ref: str, line_ref: str, business_date: date) -> str:
    return f"writeoff:{invoice_ref}:{line_ref}:{business_date.isoformat()}"
