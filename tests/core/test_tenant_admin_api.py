"""Tenant-admin endpoints: memberships and roles, and the settings that were admin-only.

Secrets are write-only (answers say `hasSecret` and when one changed) and every change is an audit
event naming who made it; no secret value ever enters the trail.
"""

import json

import pytest

from audit.models import Event
from billing.models import PaymentProvider
from tenancy.models import Membership
from tenancy.roles import Role, may
from tests.factories import MembershipFactory, TenantFactory, UserFactory


def _events(tenant, object_type):
    return list(Event.objects.filter(tenant=tenant, object_type=object_type).order_by("id"))


# --- Memberships -------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_a_tenant_admin_grants_and_revokes_roles_and_each_change_is_audited(tenant_a):
    clerk = MembershipFactory(tenant=tenant_a.tenant, roles=[Role.VIEWER])

    granted = tenant_a.client.post(f"/api/v1/memberships/{clerk.pk}/roles", {"role": "finance-approver"}, format="json")
    revoked = tenant_a.client.delete(f"/api/v1/memberships/{clerk.pk}/roles/viewer")

    assert granted.status_code == 200, granted.json()
    assert granted.json()["roles"] == ["finance-approver", "viewer"]
    assert "journeys.decide" in granted.json()["permissions"]
    assert revoked.json()["roles"] == ["finance-approver"]
    clerk.refresh_from_db()
    assert clerk.roles == ["finance-approver"]
    changes = [e for e in _events(tenant_a.tenant, "billing.membership") if e.object_id == clerk.pk]
    assert [e.reason for e in changes[-2:]] == ["role finance-approver granted", "role viewer revoked"]
    assert changes[-1].actor_label == tenant_a.user.username


@pytest.mark.django_db
def test_the_last_tenant_admin_cannot_lose_the_role(tenant_a):
    own = Membership.objects.get(tenant=tenant_a.tenant, user=tenant_a.user)

    refused = tenant_a.client.delete(f"/api/v1/memberships/{own.pk}/roles/tenant-admin")

    assert refused.status_code == 409
    assert refused.json()["code"] == "last-tenant-admin"
    own.refresh_from_db()
    assert Role.TENANT_ADMIN in own.roles
    # with a second tenant-admin, the first may step down
    MembershipFactory(tenant=tenant_a.tenant, roles=[Role.TENANT_ADMIN])
    assert tenant_a.client.delete(f"/api/v1/memberships/{own.pk}/roles/tenant-admin").status_code == 200


@pytest.mark.django_db
def test_memberships_are_the_callers_tenants_only_and_roles_are_known(tenant_a, tenant_b):
    theirs = Membership.objects.get(tenant=tenant_b.tenant, user=tenant_b.user)

    listed = tenant_a.client.get("/api/v1/memberships").json()
    foreign = tenant_a.client.post(f"/api/v1/memberships/{theirs.pk}/roles", {"role": "viewer"}, format="json")
    unknown = tenant_a.client.post(
        f"/api/v1/memberships/{listed[0]['id']}/roles", {"role": "owner"}, format="json"
    )

    assert [m["username"] for m in listed] == [tenant_a.user.username]
    assert foreign.status_code == 404
    assert unknown.status_code == 400 and unknown.json()["errors"][0]["field"] == "role"


@pytest.mark.django_db
def test_a_tenant_admin_adds_an_existing_user_with_roles(tenant_a):
    UserFactory(username="auditor")

    added = tenant_a.client.post("/api/v1/memberships", {"username": "auditor", "roles": ["viewer"]}, format="json")

    assert added.status_code == 201, added.json()
    assert added.json()["roles"] == ["viewer"]


@pytest.mark.django_db
def test_roles_are_per_tenant_so_one_person_approves_in_one_and_operates_in_another():
    acme, globex = TenantFactory(), TenantFactory()
    person = UserFactory()
    MembershipFactory(tenant=acme, user=person, roles=[Role.FINANCE_APPROVER])
    MembershipFactory(tenant=globex, user=person, roles=[Role.FINANCE_OPERATOR])

    assert may(person, acme.pk, "journeys.decide") and not may(person, acme.pk, "invoices.manage")
    assert may(person, globex.pk, "invoices.manage") and not may(person, globex.pk, "journeys.decide")
    assert not may(person, TenantFactory().pk, "books.view")


# --- Payment rails -----------------------------------------------------------------------------------
@pytest.mark.django_db
def test_payment_rail_secrets_are_write_only_rotated_and_audited(tenant_a):
    created = tenant_a.client.post(
        "/api/v1/settings/payment-providers",
        {"slug": "acme-rail", "name": "Rail", "signingSecret": "first-secret-value"},
        format="json",
    )
    rotated = tenant_a.client.post(
        "/api/v1/settings/payment-providers/acme-rail/rotate-secret", {"signingSecret": "second-secret-value"}, format="json"
    )

    assert created.status_code == 201, created.json()
    assert (created.json()["hasSecret"], created.json()["hasPreviousSecret"]) == (True, False)
    assert rotated.json()["hasPreviousSecret"] is True
    assert rotated.json()["secretRotatedAt"] >= created.json()["secretRotatedAt"]
    provider = PaymentProvider.objects.get(slug="acme-rail")
    assert provider.secrets == ["second-secret-value", "first-secret-value"]  # both accepted while switching
    ended = tenant_a.client.post("/api/v1/settings/payment-providers/acme-rail/end-rotation")
    assert ended.json()["hasPreviousSecret"] is False
    provider.refresh_from_db()
    assert provider.secrets == ["second-secret-value"]
    # nothing answered or recorded carries a secret
    answers = json.dumps([created.json(), rotated.json(), ended.json(), tenant_a.client.get("/api/v1/settings/payment-providers").json()])
    trail = _events(tenant_a.tenant, "billing.paymentprovider")
    assert "secret-value" not in answers
    assert "secret-value" not in json.dumps([(e.old_values, e.new_values) for e in trail])
    assert [e.reason for e in trail] == ["payment provider saved", "payment provider secret rotated", "payment provider previous secret dropped"]


# --- Tolerance, write-offs and Zuora, consolidation -------------------------------------------------
@pytest.mark.django_db
def test_the_tolerance_per_currency_is_set_over_the_api_and_audited(tenant_a):
    changed = tenant_a.client.patch("/api/v1/settings/reconciliation", {"amountTolerances": {"EUR": "0.05", "JPY": "5"}}, format="json")
    bad = tenant_a.client.patch("/api/v1/settings/reconciliation", {"amountTolerances": {"EUR": "0.001"}}, format="json")

    assert changed.status_code == 200, changed.json()
    assert changed.json()["amountTolerances"] == {"EUR": "0.05", "JPY": "5"}
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "amountTolerances"
    assert tenant_a.client.get("/api/v1/settings/reconciliation").json()["amountTolerances"] == {"EUR": "0.05", "JPY": "5"}
    assert [e.reason for e in _events(tenant_a.tenant, "reconciliation.reconciliationsettings")][-1] == "reconciliation settings changed"


@pytest.mark.django_db
def test_zuora_credentials_are_write_only_and_a_changed_secret_is_audited(tenant_a):
    changed = tenant_a.client.patch(
        "/api/v1/settings/write-offs",
        {"provider": "zuora", "zuoraBaseUrl": "https://rest.zuora.example", "zuoraClientId": "client",
         "zuoraClientSecret": "zuora-secret-value", "webhookSecret": "hook-secret-value"},
        format="json",
    )
    incomplete = tenant_a.client.patch("/api/v1/settings/write-offs", {"zuoraBaseUrl": ""}, format="json")

    body = changed.json()
    assert changed.status_code == 200, body
    assert (body["hasZuoraClientSecret"], body["hasWebhookSecret"], body["zuoraBaseUrl"]) == (True, True, "https://rest.zuora.example")
    assert body["secretsChangedAt"] is not None
    assert "secret-value" not in json.dumps([body, tenant_a.client.get("/api/v1/settings/write-offs").json()])
    assert incomplete.status_code == 400  # Zuora needs its base URL
    trail = _events(tenant_a.tenant, "writeoffs.writeoffsettings")
    assert trail and trail[-1].new_values["secrets_changed_at"] is not None
    assert "secret-value" not in json.dumps([(e.old_values, e.new_values) for e in trail])


@pytest.mark.django_db
def test_consolidation_settings_are_set_over_the_api_and_audited(tenant_a):
    changed = tenant_a.client.patch("/api/v1/settings/consolidation", {"numberPrefix": "SAM", "finalInvoiceOnDisable": False}, format="json")
    bad = tenant_a.client.patch("/api/v1/settings/consolidation", {"numberPrefix": "no spaces"}, format="json")

    assert changed.json() == {"numberPrefix": "SAM", "finalInvoiceOnDisable": False}
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "numberPrefix"
    assert _events(tenant_a.tenant, "consolidation.consolidationsettings")[-1].new_values["number_prefix"] == "SAM"
