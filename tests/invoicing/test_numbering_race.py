"""Numbers under races: 10 threads issuing at once, some rolling back, across a year end and for
consolidated invoices, always leave numbers gapless and unique per tenant and year (or period)."""

import threading
from datetime import date
from decimal import Decimal

import pytest
from django.db import connection, transaction

from consolidation import services as consolidation_services
from consolidation.models import ConsolidatedInvoice
from core.actors import Actor
from invoicing import services
from invoicing.models import Invoice
from tests.factories import CustomerFactory, TenantFactory

THREADS = 10
ACTOR = Actor.system("numbering race")


class Rollback(Exception):
    pass


def _drafts(tenant, count, customer=None):
    customer = customer or CustomerFactory(tenant=tenant)
    line = services.DraftLine(description="Fee", quantity=Decimal(1), unit_amount=Decimal("10.00"))
    return [services.invoice_create_draft(tenant=tenant, actor=ACTOR, customer=customer, lines=[line]) for _ in range(count)]


def _race(work, items):
    """Run work(index, item) from one thread per item, released together; return the errors."""
    barrier = threading.Barrier(len(items))
    errors = []

    def run(index, item):
        try:
            barrier.wait()
            work(index, item)
        except Rollback:
            pass
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, item)) for i, item in enumerate(items)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def _suffixes(numbers):
    return sorted(int(n.rpartition("-")[2]) for n in numbers)


@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_issues_with_half_rolled_back_leave_no_gap():
    # given 10 drafts of one tenant
    tenant = TenantFactory(invoice_number_prefix="INV")
    drafts = _drafts(tenant, THREADS)

    def issue(index, invoice):
        with transaction.atomic():
            services.invoice_issue(invoice=invoice, actor=ACTOR, issue_date=date(2026, 11, 24))
            if index % 2:
                raise Rollback  # the issuing transaction fails after the number was taken

    # when 10 threads issue at once and every other transaction rolls back
    errors = _race(issue, drafts)

    # then the committed five hold 1–5, and the rolled-back five get 6–10 when issued again
    assert errors == []
    issued = Invoice.objects.filter(tenant=tenant, number__isnull=False)
    assert _suffixes(issued.values_list("number", flat=True)) == [1, 2, 3, 4, 5]
    for invoice in Invoice.objects.filter(tenant=tenant, number__isnull=True).order_by("pk"):
        services.invoice_issue(invoice=invoice, actor=ACTOR, issue_date=date(2026, 11, 24))
    numbers = list(Invoice.objects.filter(tenant=tenant).values_list("number", flat=True))
    assert len(set(numbers)) == THREADS
    assert _suffixes(numbers) == list(range(1, THREADS + 1))


@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_issues_across_a_year_end_number_each_year_from_one():
    tenant = TenantFactory(invoice_number_prefix="INV")
    drafts = _drafts(tenant, THREADS)
    days = [date(2026, 12, 31) if i % 2 else date(2027, 1, 1) for i in range(THREADS)]

    errors = _race(lambda i, invoice: services.invoice_issue(invoice=invoice, actor=ACTOR, issue_date=days[i]), drafts)

    assert errors == []
    for year in (2026, 2027):
        numbers = Invoice.objects.filter(tenant=tenant, number__startswith=f"INV-{year}-").values_list("number", flat=True)
        assert _suffixes(numbers) == [1, 2, 3, 4, 5]


@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_consolidation_issues_number_the_period_without_gap():
    # given 10 customers of one tenant, each with a consolidated draft for the same week
    tenant = TenantFactory()
    today = date(2026, 1, 20)
    runs = []
    for _ in range(THREADS):
        customer = CustomerFactory(tenant=tenant)
        consolidation_services.customer_billing_period_update(
            customer=customer, actor=ACTOR, enabled=True, period_type="WEEKLY", start_day=1, kyc_status="APPROVED",
            today=date(2026, 1, 1),
        )
        (draft,) = _drafts(tenant, 1, customer=customer)
        services.invoice_issue(invoice=draft, actor=ACTOR, issue_date=today)
        runs.append(consolidation_services.consolidated_generate(customer=customer, actor=ACTOR, today=today).run)

    # when the 10 runs issue their drafts at once
    errors = _race(
        lambda i, run: consolidation_services.drafts_issue(run_pk=run.pk, tenant=tenant, actor=ACTOR, issue_date=today), runs
    )

    # then the week's numbers are 001–010, each once
    assert errors == []
    numbers = list(ConsolidatedInvoice.objects.filter(tenant=tenant).values_list("number", flat=True))
    assert len(set(numbers)) == THREADS
    assert {n.rpartition("-")[0] for n in numbers} == {"CONS-2026-W04"}
    assert _suffixes(numbers) == list(range(1, THREADS + 1))
