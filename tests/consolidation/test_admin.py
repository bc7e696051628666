"""The consolidated invoice's admin page settles it with a bank entry and payment (the API's service)."""

from datetime import date

import pytest

from consolidation import services
from consolidation.models import ConsolidatedInvoice
from journeys.models import JourneyRun
from tenancy.roles import may
from tests.consolidation.helpers import ACTOR, bank_entry, completed_payment, enabled_customer, issued_invoice
from tests.factories import MembershipFactory, UserFactory

SUNDAY = date(2026, 1, 25)


@pytest.fixture
def operator(tenant_a, client):
    staff = UserFactory(is_staff=True)
    MembershipFactory(tenant=tenant_a.tenant, user=staff, roles=["finance-operator"])
    client.force_login(staff)
    return staff


@pytest.mark.django_db
def test_admin_settles_through_the_service_and_says_which_field_is_wrong(tenant_a, operator, client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        customer = enabled_customer(tenant_a.tenant)
        source = issued_invoice(customer, date(2026, 1, 20))
        run = JourneyRun.objects.create(journey_name="daily-consolidation", tenant=tenant_a.tenant, current_state="buildDrafts")
        services.drafts_build(tenant_id=tenant_a.tenant.pk, run_pk=run.pk, day=SUNDAY, customer_ids=[customer.pk], actor=ACTOR)
        services.drafts_issue(run_pk=run.pk, tenant=tenant_a.tenant, actor=ACTOR, issue_date=SUNDAY)
        entry, payment = bank_entry(tenant_a.tenant, "100.00"), completed_payment(customer, "100.00")
    ci = ConsolidatedInvoice.objects.get()
    assert may(operator, tenant_a.tenant.pk, "reconciliation.match")  # who matches bank entries by hand settles too
    page = client.get(f"/admin/consolidation/consolidatedinvoice/{ci.pk}/change/")
    assert page.status_code == 200
    assert b"Settle with a bank entry" in page.content

    with django_capture_on_commit_callbacks(execute=False):
        missing = client.post(f"/admin/consolidation/consolidatedinvoice/{ci.pk}/settle/", {"payment": payment.pk}, follow=True)
        ci.refresh_from_db()
        assert ci.status == "PENDING"
        assert "bankEntry: Name the bank entry" in [str(m) for m in missing.context["messages"]][0], list(missing.context["messages"])
        typed = client.post(f"/admin/consolidation/consolidatedinvoice/{ci.pk}/settle/", {"bank_entry": "abc", "payment": payment.pk}, follow=True)
        assert typed.status_code == 200
        assert "bankEntry: Name the bank entry" in [str(m) for m in typed.context["messages"]][0]
        client.post(f"/admin/consolidation/consolidatedinvoice/{ci.pk}/settle/", {"bank_entry": entry.pk, "payment": payment.pk})

    ci.refresh_from_db()
    source.refresh_from_db()
    assert (ci.status, source.status, source.amount_paid) == ("PAID", "paid", source.total)
