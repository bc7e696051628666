"""Every decimal field of a tenant-scoped admin form takes plain decimal notation only, as the API does."""

import pytest

from journeys.models import ApprovalPolicy

POLICY = "/admin/journeys/approvalpolicy/add/"


def policy(tenant, threshold):
    return {
        "tenant": tenant.pk,
        "journey_name": "monthly-invoicing-batch",
        "mode": "above_threshold",
        "threshold_currency": "EUR",
        "threshold_amount": threshold,
    }


@pytest.mark.parametrize("threshold", ["1_000", "\uff11\uff10\uff10\uff10", "1e3"])
def test_admin_decimal_not_in_plain_notation_is_refused(admin_client, tenant_a, threshold):
    response = admin_client.post(POLICY, policy(tenant_a.tenant, threshold))

    assert response.status_code == 200 and "plain decimal number" in response.content.decode()
    assert not ApprovalPolicy.objects.exists()


def test_admin_decimal_in_plain_notation_is_saved(admin_client, tenant_a):
    response = admin_client.post(POLICY, policy(tenant_a.tenant, "1000.50"))

    assert response.status_code == 302
    assert str(ApprovalPolicy.objects.get().threshold_amount) == "1000.5000"
