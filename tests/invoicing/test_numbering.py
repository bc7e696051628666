"""Invoice numbers: unique per tenant, allocated without gaps or races."""

import threading
from datetime import date
from decimal import Decimal

import pytest
from django.db import connection, transaction

from invoicing import services
from invoicing.models import Invoice
from tests.factories import CustomerFactory, TenantFactory

THREADS = 20


def _drafts(tenant, actor, count):
    customer = CustomerFactory(tenant=tenant)
    line = services.DraftLine(description="Fee", quantity=Decimal(1), unit_amount=Decimal("10.00"))
    return [
        services.invoice_create_draft(tenant=tenant, actor=actor, customer=customer, lines=[line])
        for _ in range(count)
    ]


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_issues_get_consecutive_numbers_without_gap_or_duplicate(actor):
    # given 20 drafts of one tenant
    tenant = TenantFactory(invoice_number_prefix="INV")
    drafts = _drafts(tenant, actor, THREADS)
    barrier = threading.Barrier(THREADS)
    errors = []

    def issue(invoice):
        try:
            barrier.wait()
            services.invoice_issue(invoice=invoice, actor=actor, issue_date=date(2026, 11, 24))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    # when they are issued at the same moment from 20 threads
    threads = [threading.Thread(target=issue, args=(d,)) for d in drafts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # then every number from 1 to 20 is used exactly once
    assert errors == []
    numbers = sorted(Invoice.objects.filter(tenant=tenant).values_list("number", flat=True))
    assert numbers == [f"INV-2026-{n:06d}" for n in range(1, THREADS + 1)]


@pytest.mark.django_db(transaction=True)
def test_rolled_back_issue_gives_its_number_back(actor):
    tenant = TenantFactory()
    first, second = _drafts(tenant, actor, 2)

    with pytest.raises(RuntimeError), transaction.atomic():
        services.invoice_issue(invoice=first, actor=actor)
        raise RuntimeError("the issuing transaction failed after numbering")

    issued = services.invoice_issue(invoice=second, actor=actor)
    assert issued.number.endswith("-000001")
    first.refresh_from_db()
    assert first.number is None and first.status == "draft"


@pytest.mark.django_db
def test_numbers_are_per_tenant(actor):
    tenant_one, tenant_two = TenantFactory(), TenantFactory()
    (a,) = _drafts(tenant_one, actor, 1)
    (b,) = _drafts(tenant_two, actor, 1)

    assert services.invoice_issue(invoice=a, actor=actor).number.endswith("-000001")
    assert services.invoice_issue(invoice=b, actor=actor).number.endswith("-000001")
