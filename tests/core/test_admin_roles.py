"""The admin obeys the same roles table as the API, for the tenant of the row being viewed."""

from decimal import Decimal

import pytest

from invoicing.models import Invoice
from tenancy.models import Membership
from tenancy.roles import Role
from tests.factories import MembershipFactory, UserFactory


def _staff(client, tenant, *roles):
    user = UserFactory(is_staff=True)
    MembershipFactory(tenant=tenant, user=user, roles=list(roles))
    client.force_login(user)
    return user


@pytest.mark.django_db
def test_a_viewer_sees_invoices_but_its_issue_action_changes_nothing(client, tenant_a, draft_invoice, django_capture_on_commit_callbacks):
    _staff(client, tenant_a.tenant, Role.VIEWER)

    listed = client.get("/admin/invoicing/invoice/")
    with django_capture_on_commit_callbacks(execute=False):
        acted = client.post(
            "/admin/invoicing/invoice/", {"action": "issue", "_selected_action": [draft_invoice.pk]}, follow=True
        )

    assert listed.status_code == 200 and str(draft_invoice.customer.name).encode() in listed.content
    draft_invoice.refresh_from_db()
    assert draft_invoice.status == "draft"
    assert acted.status_code == 200


@pytest.mark.django_db
def test_an_operator_issues_through_the_admin_action(client, tenant_a, draft_invoice, django_capture_on_commit_callbacks):
    _staff(client, tenant_a.tenant, Role.FINANCE_OPERATOR)

    with django_capture_on_commit_callbacks(execute=False):
        client.post("/admin/invoicing/invoice/", {"action": "issue", "_selected_action": [draft_invoice.pk]})

    assert Invoice.objects.get(pk=draft_invoice.pk).status == "payment_due"


@pytest.mark.django_db
def test_an_operator_in_one_tenant_and_viewer_in_another_acts_only_where_it_operates(
    client, tenant_a, tenant_b, draft_invoice, django_capture_on_commit_callbacks, actor
):
    from invoicing import services
    from tests.factories import CustomerFactory

    user = _staff(client, tenant_a.tenant, Role.VIEWER)
    MembershipFactory(tenant=tenant_b.tenant, user=user, roles=[Role.FINANCE_OPERATOR])
    theirs = services.invoice_create_draft(
        tenant=tenant_b.tenant, actor=actor, customer=CustomerFactory(tenant=tenant_b.tenant), lines=[
            services.DraftLine(description="Fee", quantity=Decimal("1"), unit_amount=Decimal("10.00"))
        ]
    )

    with django_capture_on_commit_callbacks(execute=False):
        client.post("/admin/invoicing/invoice/", {"action": "issue", "_selected_action": [draft_invoice.pk, theirs.pk]})

    assert Invoice.objects.get(pk=draft_invoice.pk).status == "draft"  # viewer there
    assert Invoice.objects.get(pk=theirs.pk).status == "payment_due"  # operator there


@pytest.mark.django_db
def test_a_tenant_admin_manages_settings_but_does_not_read_the_books(client, tenant_a, draft_invoice):
    _staff(client, tenant_a.tenant, Role.TENANT_ADMIN)

    assert client.get("/admin/reconciliation/reconciliationsettings/").status_code == 200
    assert client.get("/admin/tenancy/membership/").status_code == 200
    assert client.get("/admin/invoicing/invoice/").status_code == 403
    assert client.get(f"/admin/invoicing/invoice/{draft_invoice.pk}/change/").status_code in (302, 403)


@pytest.mark.django_db
def test_an_operator_cannot_open_the_tenant_settings_or_memberships(client, tenant_a):
    _staff(client, tenant_a.tenant, Role.FINANCE_OPERATOR)

    assert client.get("/admin/reconciliation/reconciliationsettings/").status_code == 403
    assert client.get("/admin/tenancy/membership/").status_code == 403
    assert client.get("/admin/writeoffs/writeoffsettings/").status_code == 403


@pytest.mark.django_db
def test_the_membership_admin_goes_through_the_services_and_keeps_the_last_tenant_admin(client, tenant_a, actor):
    from tenancy import services

    admin_user = _staff(client, tenant_a.tenant, Role.TENANT_ADMIN)
    services.membership_remove(membership=Membership.objects.get(user=tenant_a.user), actor=actor)
    own = Membership.objects.get(tenant=tenant_a.tenant, user=admin_user)

    response = client.post(f"/admin/tenancy/membership/{own.pk}/change/", {"roles": ["viewer"]}, follow=True)

    own.refresh_from_db()
    assert Role.TENANT_ADMIN in own.roles
    assert any("last tenant-admin" in str(m) for m in response.context["messages"])


@pytest.mark.django_db
def test_the_old_billing_admin_addresses_of_tenants_and_memberships_redirect_to_tenancy(client):
    moved = client.get("/admin/billing/membership/?tenant__id__exact=1")
    tenant = client.get("/admin/billing/tenant/3/change/")

    assert (moved.status_code, moved["Location"]) == (301, "/admin/tenancy/membership/?tenant__id__exact=1")
    assert (tenant.status_code, tenant["Location"]) == (301, "/admin/tenancy/tenant/3/change/")
    assert client.get("/admin/billing/customer/").status_code == 302  # to the login, not moved
