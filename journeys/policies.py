"""Whether a run must wait for approval under its tenant's policy (default: always)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from journeys.models import ApprovalPolicy


def approval_policy_decides(
    *, tenant_id: int, journey_name: str, totals_by_currency: Mapping[str, Decimal]
) -> str | None:
    """The policy's mode when it lets the kernel approve without a person ("never" or
    "above_threshold" with every total within it); None when a person must decide."""
    policy = ApprovalPolicy.objects.filter(tenant_id=tenant_id, journey_name=journey_name).first()
    if policy is None or not _within(policy, totals_by_currency):
        return None
    return policy.mode


def _within(policy: ApprovalPolicy, totals_by_currency: Mapping[str, Decimal]) -> bool:
    if policy.mode == ApprovalPolicy.Mode.ALWAYS:
        return False
    if policy.mode == ApprovalPolicy.Mode.NEVER:
        return True
    return all(
        currency == policy.threshold_currency and abs(Decimal(total)) <= policy.threshold_amount
        for currency, total in totals_by_currency.items()
    )


def policy_rows(*, tenant_id: int, journey_name: str, state) -> list[tuple[str, str]]:
    """The approval policy as the admin shows it: who decides, maker-checker, auto-approval."""
    policy = ApprovalPolicy.objects.filter(tenant_id=tenant_id, journey_name=journey_name).first()
    if state.policy.amounts is None:
        auto = "never: this step always waits for a person"
    elif policy is None or policy.mode == ApprovalPolicy.Mode.ALWAYS:
        auto = "never: the tenant's policy is 'always'"
    elif policy.mode == ApprovalPolicy.Mode.NEVER:
        auto = "always: the tenant's policy is 'never'"
    else:
        auto = f"when every total is within {policy.threshold_amount} {policy.threshold_currency}"
    return [
        ("Who may decide", f"permission {state.policy.permission} in this tenant"),
        ("Maker-checker", "the person who started the run may not decide" if state.policy.maker_checker else "off"),
        ("Approved without a person", auto),
    ]


def approval_required(*, tenant_id: int, journey_name: str, totals_by_currency: Mapping[str, Decimal]) -> bool:
    """True unless the policy says never, or above_threshold and every total is within it."""
    return approval_policy_decides(
        tenant_id=tenant_id, journey_name=journey_name, totals_by_currency=totals_by_currency
    ) is None
