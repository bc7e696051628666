"""HTTP surface: customer settings, consolidated invoices with filters, generate, scheduler."""

from datetime import date

import pytest
import time_machine

from tests.consolidation.helpers import enabled_customer, issued_invoice
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db
SETTINGS = "/api/v1/consolidation/customers/{}/settings"


def test_settings_are_saved_and_start_day_outside_range_answers_400(api, tenant_a):
    customer = CustomerFactory(tenant=tenant_a.tenant)

    ok = api.put(
        SETTINGS.format(customer.pk),
        {"billingPeriodEnabled": True, "billingPeriodType": "WEEKLY", "billingPeriodStartDay": 7, "kycStatus": "APPROVED"},
        format="json",
    )
    weekly_eight = api.put(SETTINGS.format(customer.pk), {"billingPeriodStartDay": 8}, format="json")
    monthly_29 = api.put(SETTINGS.format(customer.pk), {"billingPeriodType": "MONTHLY", "billingPeriodStartDay": 29}, format="json")

    assert ok.status_code == 200, ok.json()
    assert ok.json()["billingPeriodStartDay"] == 7 and ok.json()["billingPeriodEnabled"] is True
    assert (weekly_eight.status_code, monthly_29.status_code) == (400, 400)
    assert api.get(SETTINGS.format(customer.pk)).json()["billingPeriodType"] == "WEEKLY"


def test_another_tenants_customer_settings_are_not_found(api, tenant_b):
    assert api.get(SETTINGS.format(CustomerFactory(tenant=tenant_b.tenant).pk)).status_code == 404


def test_generate_answers_with_the_invoice_then_says_why_not(api, tenant_a, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        customer = enabled_customer(tenant_a.tenant)
        source = issued_invoice(customer, date(2026, 1, 20))
        with time_machine.travel("2026-01-22T12:00Z"):
            created = api.post("/api/v1/consolidated-invoices/generate", {"customer": customer.pk}, format="json")
            again = api.post("/api/v1/consolidated-invoices/generate", {"customer": customer.pk}, format="json")
            empty = api.post(
                "/api/v1/consolidated-invoices/generate", {"customer": customer.pk, "periodStart": "2026-01-26"}, format="json"
            )
            not_a_start = api.post(
                "/api/v1/consolidated-invoices/generate", {"customer": customer.pk, "periodStart": "2026-01-27"}, format="json"
            )

    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["periodStart"], body["invoiceCount"], body["status"]) == ("2026-01-19", 1, "DRAFT")
    assert body["lines"][0]["invoiceUrl"] == f"/api/v1/invoices/{source.pk}"
    assert body["journeyId"]
    assert (again.status_code, again.json()["code"]) == (409, "period-already-consolidated")
    assert (empty.status_code, empty.json()["code"]) == (422, "no-invoices-in-period")
    assert not_a_start.status_code == 400


def test_list_filters_by_customer_period_and_status(api, tenant_a, django_capture_on_commit_callbacks):
    from consolidation import services
    from tests.consolidation.helpers import ACTOR

    with django_capture_on_commit_callbacks(execute=False):
        customer = enabled_customer(tenant_a.tenant)
        issued_invoice(customer, date(2026, 1, 20))
        services.consolidated_generate(customer=customer, actor=ACTOR, today=date(2026, 1, 22))

    def count(query):
        return api.get(f"/api/v1/consolidated-invoices?{query}").json()["count"]

    assert count(f"customer={customer.pk}") == 1
    assert count("period=2026-W04") == 1
    assert count("period=2026-01-25") == 1
    assert count("period=2026-W05") == 0
    assert count("status=DRAFT") == 1
    assert count("status=PAID") == 0


def test_scheduler_status_and_trigger(api, tenant_a, django_capture_on_commit_callbacks):
    status = api.get("/api/v1/consolidation/scheduler").json()
    with django_capture_on_commit_callbacks(execute=False):
        triggered = api.post("/api/v1/consolidation/scheduler/trigger")
    after = api.get("/api/v1/consolidation/scheduler").json()

    assert set(status) == {"isRunning", "schedule", "timezone", "lockTimeout", "lastRun", "nextRun"}
    assert status["schedule"] == "0 1 * * *" and status["lastRun"] is None
    assert triggered.status_code == 202
    assert after["lastRun"]["journeyId"] == triggered.json()["journeyId"]


def test_settle_pays_through_a_bank_entry_and_payment_and_names_a_bad_or_missing_one(api, tenant_a, tenant_b, django_capture_on_commit_callbacks):
    from consolidation import services
    from consolidation.models import ConsolidatedInvoice
    from journeys.models import JourneyRun
    from tests.consolidation.helpers import ACTOR, bank_entry, completed_payment

    with django_capture_on_commit_callbacks(execute=False):
        customer = enabled_customer(tenant_a.tenant)
        source = issued_invoice(customer, date(2026, 1, 20))
        run = JourneyRun.objects.create(journey_name="daily-consolidation", tenant=tenant_a.tenant, current_state="buildDrafts")
        services.drafts_build(tenant_id=tenant_a.tenant.pk, run_pk=run.pk, day=date(2026, 1, 25), customer_ids=[customer.pk], actor=ACTOR)
        services.drafts_issue(run_pk=run.pk, tenant=tenant_a.tenant, actor=ACTOR, issue_date=date(2026, 1, 25))
        ci = ConsolidatedInvoice.objects.get()
        entry, payment = bank_entry(tenant_a.tenant, "100.00"), completed_payment(customer, "100.00")
        foreign_entry = bank_entry(tenant_b.tenant, "100.00")
        url = f"/api/v1/consolidated-invoices/{ci.pk}/settle"

        missing = api.post(url, {"payment": payment.pk}, format="json")
        foreign = api.post(url, {"bankEntry": foreign_entry.pk, "payment": payment.pk}, format="json")
        short = api.post(url, {"bankEntry": bank_entry(tenant_a.tenant, "10.00").pk, "payment": payment.pk}, format="json")
        no_payment = api.post(url, {"bankEntry": entry.pk, "payment": 999999}, format="json")
        paid = api.post(url, {"bankEntry": entry.pk, "payment": payment.pk, "reason": "remittance CONS-2026-W04-001"}, format="json")

    for response, field in ((missing, "bankEntry"), (foreign, "bankEntry"), (short, "bankEntry"), (no_payment, "payment")):
        assert response.status_code == 400, response.json()
        assert [e["field"] for e in response.json()["errors"]] == [field]
    assert paid.status_code == 200, paid.json()
    assert (paid.json()["status"], paid.json()["paymentReference"]) == ("PAID", "CONS-REF")
    source.refresh_from_db()
    assert (source.status, source.amount_paid) == ("paid", source.total)
