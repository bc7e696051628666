"""The Django admin: every model registered, scoped by tenant for staff who are not superusers."""

import pytest
from django.apps import apps
from django.contrib import admin

from tests.factories import CustomerFactory, MembershipFactory, TenantFactory, UserFactory

OUR_APPS = {"core", "audit", "billing", "invoicing", "journeys", "consolidation", "reconciliation", "writeoffs"}


def test_every_model_of_our_apps_is_in_the_admin():
    models = [m for m in apps.get_models() if m._meta.app_label in OUR_APPS]

    assert models
    assert [m for m in models if m not in admin.site._registry] == []


@pytest.mark.django_db
def test_the_former_global_groups_are_gone():
    from django.contrib.auth.models import Group

    assert not Group.objects.filter(name__in=["finance-approver", "finance-operator", "integration"]).exists()


@pytest.mark.django_db
def test_staff_sees_only_their_tenants_customers(client):
    mine, theirs = TenantFactory(), TenantFactory()
    own = CustomerFactory(tenant=mine, name="Own Airline")
    CustomerFactory(tenant=theirs, name="Rival Airline")
    staff = UserFactory(is_staff=True)
    MembershipFactory(tenant=mine, user=staff, roles=["finance-operator"])
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
    MembershipFactory(tenant=mine, user=staff, roles=["finance-operator"])
    client.force_login(staff)

    response = client.get(f"/admin/billing/customer/{foreign.pk}/change/")

    # the admin answers "does not exist" by redirecting to the index with a message
    assert response.status_code == 302
