"""Whether a run must wait for approval under its tenant's policy (default: always)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from journeys.models import ApprovalPolicy


def approval_required(*, tenant_id: int, journey_name: str, totals_by_currency: Mapping[str, Decimal]) -> bool:
    """True unless the policy says never, or above_threshold and every total is within it."""
    policy = ApprovalPolicy.objects.filter(tenant_id=tenant_id, journey_name=journey_name).first()
    if policy is None or policy.mode == ApprovalPolicy.Mode.ALWAYS:
        return True
    if policy.mode == ApprovalPolicy.Mode.NEVER:
        return False
    for currency, total in totals_by_currency.items():
        if currency != policy.threshold_currency or abs(Decimal(total)) > policy.threshold_amount:
            return True
    return False
