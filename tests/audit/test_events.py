"""Every change to money or to a status writes an event in the same transaction, with its actor."""

from decimal import Decimal

import pytest
from django.db import transaction

from audit.models import Event
from billing import services as billing
from core.actors import Actor
from core.attribution import audited
from invoicing import services as invoicing
from invoicing.models import Invoice


def events_for(obj, **filters):
    return Event.objects.filter(object_type=obj._meta.label_lower, object_id=obj.pk, **filters).order_by("id")


def test_issuing_an_invoice_records_the_status_change_with_actor_and_reason(
    draft_invoice, django_capture_on_commit_callbacks
):
    clerk = Actor(type="user", id="7", label="clerk")

    with django_capture_on_commit_callbacks():
        invoicing.invoice_issue(invoice=draft_invoice, actor=clerk)

    event = events_for(draft_invoice, action="updated").last()
    assert event.old_values["status"] == "draft"
    assert event.new_values["status"] == "payment_due"
    assert (event.actor_type, event.actor_id, event.actor_label, event.reason) == (
        "user",
        "7",
        "clerk",
        "invoice issued",
    )


def test_amounts_are_recorded_exactly_as_strings(draft_invoice):
    created = events_for(draft_invoice, action="created").get()

    # the draft is created empty, then its totals are set: both are in the trail
    assert created.new_values["total"] == "0.0000"
    assert events_for(draft_invoice, action="updated").last().new_values["total"] == "129.0000"


def test_queryset_update_is_audited_row_by_row(tenant_a, customer, actor):
    drafts = [
        invoicing.invoice_create_draft(
            tenant=tenant_a.tenant,
            actor=actor,
            customer=customer,
            lines=[invoicing.DraftLine(description="x", quantity=Decimal(1), unit_amount=Decimal("1.00"))],
        )
        for _ in range(3)
    ]
    bulk = Actor.system("bulk-fix")

    with audited(actor=bulk, reason="bulk cancel"):
        Invoice.objects.filter(pk__in=[d.pk for d in drafts]).update(status="cancelled")

    for draft in drafts:
        event = events_for(draft, reason="bulk cancel").get()
        assert event.new_values["status"] == "cancelled"
        assert event.actor_label == "bulk-fix"


def test_change_outside_audited_is_still_recorded_as_unattributed(draft_invoice):
    Invoice.objects.filter(pk=draft_invoice.pk).update(memo="not tracked", status="cancelled")

    event = events_for(draft_invoice).last()
    assert (event.actor_type, event.actor_label) == ("system", "unattributed")


def test_update_of_untracked_columns_writes_no_event(draft_invoice):
    before = events_for(draft_invoice).count()

    Invoice.objects.filter(pk=draft_invoice.pk).update(memo="only the memo")

    assert events_for(draft_invoice).count() == before


def test_rolled_back_change_leaves_no_event(draft_invoice, actor):
    before = Event.objects.count()

    with pytest.raises(RuntimeError), transaction.atomic():
        invoicing.invoice_cancel(invoice=draft_invoice, actor=actor, reason="oops")
        raise RuntimeError

    assert Event.objects.count() == before


def test_nested_audited_blocks_restore_the_outer_attribution(draft_invoice, customer):
    outer, inner = Actor.system("outer"), Actor.system("inner")

    with audited(actor=outer, reason="outer"):
        with audited(actor=inner, reason="inner"):
            Invoice.objects.filter(pk=draft_invoice.pk).update(memo="x", due_date="2026-12-01")
        billing.subscription_create(
            tenant=customer.tenant,
            actor=outer,
            customer=customer,
            plan_name="P",
            unit_price=Decimal(1),
            currency="EUR",
            started_on="2026-01-01",
        )
        Invoice.objects.filter(pk=draft_invoice.pk).update(due_date="2026-12-02")

    labels = list(events_for(draft_invoice, action="updated").values_list("actor_label", flat=True))
    assert labels[-2:] == ["inner", "outer"]


def test_payment_status_change_is_audited(customer, actor):
    payment = billing.payment_create(
        tenant=customer.tenant,
        actor=actor,
        customer=customer,
        method="offline",
        amount=Decimal("5.00"),
        currency="EUR",
    )

    billing.payment_transition(payment=payment, actor=actor, status="failed", reason="card declined")

    event = events_for(payment, action="updated").get()
    assert (event.old_values["status"], event.new_values["status"], event.reason) == (
        "pending",
        "failed",
        "card declined",
    )


def test_events_api_filters_by_object_and_is_read_only(api, tenant_a, draft_invoice, actor):
    response = api.get(f"/api/v1/events?objectType=invoicing.invoice&objectId={draft_invoice.pk}")

    assert response.status_code == 200
    rows = response.json()["results"]
    assert rows and {r["objectId"] for r in rows} == {draft_invoice.pk}
    assert {"actorType", "actorLabel", "oldValues", "newValues", "reason", "occurredAt"} <= rows[0].keys()
    assert api.post("/api/v1/events", {}, format="json").status_code == 405


def test_events_api_filters_by_actor_and_date(api, draft_invoice):
    assert api.get("/api/v1/events?actorType=system&actorId=").status_code == 200
    assert api.get("/api/v1/events?occurredFrom=2999-01-01T00:00:00Z").json()["results"] == []
    assert api.get("/api/v1/events?occurredFrom=yesterday").status_code == 400
