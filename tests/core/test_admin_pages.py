"""Every admin page of our apps opens: the list and the change page of a row that has what a real
book has (an issued invoice with an adjustment, a payment, a bank entry).

Found by use: every invoice page answered 500 once an adjustment existed, because the read-only
adjustment inline named `created_at`, a field a model form cannot hold.
"""

from decimal import Decimal

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse

from invoicing import services as invoicing_services
from invoicing.lifecycle import AdjustmentType
from tests.core.test_admin import OUR_APPS
from tests.factories import PaymentFactory, UserFactory


@pytest.fixture
def book(issued_invoice, actor):
    item = issued_invoice.items.first()
    invoicing_services.invoice_adjust(
        invoice=issued_invoice,
        actor=actor,
        type=AdjustmentType.CREDIT,
        amount=Decimal("5.00"),
        reason="goodwill",
        source="admin",
        idempotency_key="goodwill-1",
        invoice_item=item,
    )
    PaymentFactory(tenant=issued_invoice.tenant, customer=issued_invoice.customer, invoice=issued_invoice)
    return issued_invoice


@pytest.mark.django_db
def test_invoice_page_with_an_adjustment_opens(client, book):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))

    page = client.get(reverse("admin:invoicing_invoice_change", args=[book.pk]))

    assert page.status_code == 200
    assert b"goodwill" in page.content


@pytest.mark.django_db
def test_every_admin_list_and_change_page_opens(client, book):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    opened = 0
    for model in admin.site._registry:
        if model._meta.app_label not in OUR_APPS:
            continue
        info = (model._meta.app_label, model._meta.model_name)
        listing = client.get(reverse("admin:{}_{}_changelist".format(*info)))
        assert listing.status_code == 200, (info, listing.status_code)
        row = model._default_manager.order_by("pk").first()
        if row is None:
            continue
        change = client.get(reverse("admin:{}_{}_change".format(*info), args=[row.pk]))
        assert change.status_code == 200, (info, change.status_code)
        opened += 1

    assert opened >= 6
    assert apps.get_model("invoicing", "InvoiceAdjustment").objects.exists()
