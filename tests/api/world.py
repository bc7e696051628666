"""One tenant's books with a record behind every API resource, so a test that walks the whole API
(from its OpenAPI schema) finds a real row for each path id: customers with an address, a
subscription, charges, draft and issued invoices, a payment, a bank statement with a matched and an
unmatched entry, a consolidated invoice, a monthly batch waiting for approval, a write-off run."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from billing.models import Customer
from billing.webhooks import payment_provider_create
from consolidation import services as consolidation_services
from core.actors import Actor
from core.timezones import business_today
from invoicing import services as invoicing_services
from journeys.models import JourneyRun
from reconciliation import services as reconciliation_services
from tenancy.models import Membership
from tests.consolidation.helpers import completed_payment, enabled_customer, issued_invoice
from tests.factories import (
    BankAccountFactory,
    ChargeFactory,
    CustomerFactory,
    SubscriptionFactory,
    UserFactory,
)
from tests.journeys.helpers import waiting_monthly_batch
from tests.reconciliation.camt import camt053
from tests.writeoffs.helpers import start_run

ACTOR = Actor.system("tests")


@dataclass
class World:
    customer: Customer
    # Ids by the API collection they are read from (the first path segment after /api/v1).
    ids: dict[str, list] = field(default_factory=dict)


def seed_world(tenant) -> World:
    """Call inside the test's transaction: on_commit work (emails, matching tasks) never runs."""
    customer = CustomerFactory(
        tenant=tenant,
        address_line1="Hauptstraße 1",
        address_line2="Hangar 5",
        city="Frankfurt",
        postal_code="60549",
    )
    SubscriptionFactory(customer=customer, tax_rate=Decimal("0.19"))
    ChargeFactory(customer=customer)
    invoicing_services.invoice_create_draft(
        tenant=tenant,
        actor=ACTOR,
        customer=customer,
        lines=[
            invoicing_services.DraftLine(
                description="Navigation fee",
                quantity=Decimal("2"),
                unit_amount=Decimal("50.00"),
                tax_rate=Decimal("0.19"),
                details={"route": "EDDF-LFPG"},
            )
        ],
        period_start=date(2026, 1, 1),
        period_end=date(2026, 1, 31),
        memo="January",
    )
    issued = issued_invoice(customer, business_today(), amount="100.00")
    completed_payment(customer, str(issued.total), reference=issued.number)

    account = BankAccountFactory(tenant=tenant)
    entries = [
        {"amount": str(issued.total), "ref": issued.number, "text": issued.number, "txid": "TX-PAID"},
        {"amount": "42.00", "ref": "UNKNOWN", "text": "who knows", "txid": "TX-OPEN"},
    ]
    reconciliation_services.statement_import(
        tenant=tenant,
        actor=ACTOR,
        bank_account=account,
        stream=io.BytesIO(camt053(entries)),
        file_name="statement.xml",
        run_matching=False,
    )
    reconciliation_services.reconciliation_run(tenant_id=tenant.pk, actor=ACTOR)

    consolidated_customer = enabled_customer(tenant)
    issued_invoice(consolidated_customer, business_today(), amount="80.00")
    consolidation_services.consolidated_generate(customer=consolidated_customer, actor=ACTOR)

    batch = waiting_monthly_batch(tenant, UserFactory())
    start_run(tenant, business_today())

    provider = payment_provider_create(
        tenant=tenant, actor=ACTOR, slug=f"rail-{tenant.slug}", name="Card rail", signing_secret="s3cret-rail"
    )

    world = World(customer=customer)
    # Tenant settings by their path's first segment: the payment rail a slug names.
    world.ids["settings"] = [provider.slug]
    world.ids["memberships"] = list(Membership.objects.filter(tenant=tenant).values_list("pk", flat=True))
    # The batch waiting for approval first: its step is the one a decision names.
    others = (
        JourneyRun.objects.filter(tenant=tenant).exclude(pk=batch.pk).values_list("journey_id", flat=True)
    )
    world.ids["journeys"] = [batch.journey_id, *others]
    world.ids["write-off-runs"] = list(
        JourneyRun.objects.filter(tenant=tenant, journey_name="daily-write-off").values_list(
            "journey_id", flat=True
        )
    )
    return world


def listed_ids(client, collection: str) -> list:
    body = client.get(f"/api/v1/{collection}", {"pageSize": 500}).json()
    rows = body["results"] if "results" in body else body.get("items", [])
    return [row.get("id", row.get("journeyId")) for row in rows]
