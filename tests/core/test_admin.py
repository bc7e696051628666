"""The Django admin: every model registered, scoped by tenant for staff who are not superusers."""

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import Group

from tests.factories import CustomerFactory, MembershipFactory, TenantFactory, UserFactory

OUR_APPS = {"core", "audit", "billing", "invoicing", "journeys", "consolidation", "reconciliation", "writeoffs"}


def test_every_model_of_our_apps_is_in_the_admin():
    models = [m for m in apps.get_models() if m._meta.app_label in OUR_APPS]

    assert models
    assert [m for m in models if m not in admin.site._registry] == []


@pytest.mark.django_db
def test_finance_groups_exist_with_permissions():
    groups = {g.name: g for g in Group.objects.prefetch_related("permissions")}

    assert {"finance-approver", "finance-operator", "integration"} <= groups.keys()
    assert groups["finance-operator"].permissions.filter(codename="change_invoice").exists()
    assert not groups["finance-approver"].permissions.filter(codename__startswith="change_").exists()


@pytest.mark.django_db
def test_staff_sees_only_their_tenants_customers(client):
    mine, theirs = TenantFactory(), TenantFactory()
    own = CustomerFactory(tenant=mine, name="Own Airline")
    CustomerFactory(tenant=theirs, name="Rival Airline")
    staff = UserFactory(is_staff=True)
    staff.groups.add(Group.objects.get(name="finance-operator"))
    MembershipFactory(tenant=mine, user=staff)
    client.force_login(staff)

    page = client.get("/admin/billing/customer/")

    assert page.status_code == 200
    assert b"Own Airline" in page.content
    assert b"Rival Airline" not in page.content
    assert client.get(f"/admin/billing/customer/{own.pk}/change/").status_code == 200


@pytest.mark.django_db
def test_staff_gets_404_like_redirect_for_other_tenants_record(client):
    mine, theirs = TenantFactory(), TenantFactory()
    foreign = CustomerFactory(tenant=theirs)
    staff = UserFactory(is_staff=True)
    staff.groups.add(Group.objects.get(name="finance-operator"))
    MembershipFactory(tenant=mine, user=staff)
    client.force_login(staff)

    response = client.get(f"/admin/billing/customer/{foreign.pk}/change/")

    # the admin answers "does not exist" by redirecting to the index with a message
    assert response.status_code == 302


@pytest.mark.django_db
def test_finance_operator_can_work_the_later_apps():
    operator = Group.objects.get(name="finance-operator")

    for codename in ("change_bankentry", "change_reconciliation", "view_writeoffcandidate", "change_customerbillingperiod"):
        assert operator.permissions.filter(codename=codename).exists(), codename
