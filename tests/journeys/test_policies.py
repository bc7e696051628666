from decimal import Decimal

import pytest

from journeys.models import ApprovalPolicy
from journeys.policies import approval_required


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("mode", "threshold", "totals", "required"),
    [
        (None, None, {"EUR": "1"}, True),
        ("always", None, {"EUR": "0"}, True),
        ("never", None, {"EUR": "1000000"}, False),
        ("above_threshold", "500", {"EUR": "500"}, False),
        ("above_threshold", "500", {"EUR": "500.01"}, True),
        ("above_threshold", "500", {"EUR": "-600"}, True),
        ("above_threshold", "500", {"EUR": "10", "USD": "10"}, True),
    ],
)
def test_approval_policy(tenant_a, mode, threshold, totals, required):
    if mode:
        ApprovalPolicy.objects.create(
            tenant=tenant_a.tenant, journey_name="daily-write-off", mode=mode,
            threshold_amount=Decimal(threshold) if threshold else None, threshold_currency="EUR",
        )

    result = approval_required(
        tenant_id=tenant_a.tenant.pk, journey_name="daily-write-off", totals_by_currency={k: Decimal(v) for k, v in totals.items()}
    )

    assert result is required
