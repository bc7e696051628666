"""Fixtures for reconciliation: a tenant's bank account, issued invoices and payments."""

import io
from decimal import Decimal

import pytest

from billing import services as billing_services
from billing.lifecycle import PaymentStatus
from invoicing import services as invoicing_services
from reconciliation import services
from tests.factories import BankAccountFactory, CustomerFactory, PaymentFactory
from tests.reconciliation.camt import camt053


class Books:
    """One tenant's receivables, with helpers to issue invoices, take payments and import."""

    def __init__(self, tenant, actor, capture):
        self.tenant, self.actor, self._capture = tenant, actor, capture
        self.customer = CustomerFactory(tenant=tenant)
        self.account = BankAccountFactory(tenant=tenant)

    def invoice(self, amount: str, customer=None):
        draft = invoicing_services.invoice_create_draft(
            tenant=self.tenant,
            actor=self.actor,
            customer=customer or self.customer,
            lines=[
                invoicing_services.DraftLine(
                    description="Route charges", quantity=Decimal(1), unit_amount=Decimal(amount)
                )
            ],
        )
        with self._capture(execute=False):
            return invoicing_services.invoice_issue(invoice=draft, actor=self.actor)

    def payment(
        self,
        amount: str,
        *,
        invoice=None,
        rail: str = "",
        reference: str = "",
        status="completed",
        customer=None,
    ):
        payment = PaymentFactory(
            customer=customer or (invoice.customer if invoice else self.customer),
            invoice=invoice,
            amount=Decimal(amount),
            rail_transaction_id=rail,
            reference=reference,
        )
        with self._capture(execute=False):
            if status in (PaymentStatus.PROCESSING, PaymentStatus.COMPLETED):
                billing_services.payment_transition(
                    payment=payment, actor=self.actor, status=PaymentStatus.PROCESSING
                )
            if status in (PaymentStatus.COMPLETED, PaymentStatus.FAILED):
                payment = billing_services.payment_transition(
                    payment=payment, actor=self.actor, status=status
                )
        return payment

    def import_camt(self, entries, **kwargs):
        with self._capture(execute=False):
            return services.statement_import(
                tenant=self.tenant,
                actor=self.actor,
                bank_account=self.account,
                stream=io.BytesIO(camt053(entries, **kwargs)),
                file_name="statement.xml",
                run_matching=False,
            )

    def run(self):
        return services.reconciliation_run(tenant_id=self.tenant.pk, actor=self.actor)


@pytest.fixture
def books(tenant_a, actor, django_capture_on_commit_callbacks):
    return Books(tenant_a.tenant, actor, django_capture_on_commit_callbacks)
