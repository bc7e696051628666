"""Demo data for a development installation, written through the real services.

Two tenants, three customers each, with subscriptions (one cancelled), charges (flight-style ones
whose details hold aircraft, route, FIRs and countries) and invoices in every early state:
draft, payment_due, overdue and cancelled. Each tenant also gets one user per role
(`acme-viewer`, `acme-operator`, `acme-approver`, `acme-integration`, `acme-admin`, and the same for
`globex`), each a member of its tenant with that role and a REST API token.

Idempotent: tenants are keyed on their slug, customers on their external_ref, and a customer that
exists is left alone with everything hanging off it, so a second run creates nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

import structlog
from django.db import transaction
from django.utils import timezone

from billing import services as billing
from billing.models import Customer
from core.actors import Actor
from core.timezones import business_today
from invoicing import services as invoicing
from tenancy import services as tenancy
from tenancy.models import Tenant
from tenancy.roles import Role

log = structlog.get_logger(__name__)

ACTOR = Actor.system("seed_demo")
# Each demo tenant's users: `<slug>-<suffix>` holds the role (and only it).
DEMO_USERS = (
    ("viewer", Role.VIEWER),
    ("operator", Role.FINANCE_OPERATOR),
    ("approver", Role.FINANCE_APPROVER),
    ("integration", Role.INTEGRATION),
    ("admin", Role.TENANT_ADMIN),
)

DRAFT, PAYMENT_DUE, OVERDUE, CANCELLED = "draft", "payment_due", "overdue", "cancelled"


@dataclass(frozen=True, slots=True)
class DemoSubscription:
    plan_name: str
    unit_price: str
    billing_cadence: str
    started_days_ago: int
    # Set for a subscription that was cancelled, e.g. "SALESFORCE": a CancellationSource value.
    cancelled_by: str = ""
    tax_rate: str = "0.19"


@dataclass(frozen=True, slots=True)
class DemoCharge:
    description: str
    unit_amount: str
    days_ago: int
    tax_rate: str = "0"
    quantity: str = "1"
    details: dict = field(default_factory=dict)
    # A periodic fee of the customer's subscription rather than a one-off item.
    of_subscription: bool = False


@dataclass(frozen=True, slots=True)
class DemoInvoice:
    # Positions in the customer's charges list.
    charges: tuple[int, ...]
    state: str


@dataclass(frozen=True, slots=True)
class DemoCustomer:
    external_ref: str
    name: str
    email: str
    country: str
    city: str
    charges: tuple[DemoCharge, ...]
    invoices: tuple[DemoInvoice, ...]
    subscription: DemoSubscription | None = None


@dataclass(frozen=True, slots=True)
class DemoTenant:
    slug: str
    name: str
    currency: str
    invoice_number_prefix: str
    payment_terms_days: int
    customers: tuple[DemoCustomer, ...]


def _flight(
    *,
    registration: str,
    aircraft_type: str,
    origin: str,
    destination: str,
    firs: list[str],
    countries: list[str],
    service_units: str,
    unit_rate: str,
    days_ago: int,
    kind: str = "En-route charges",
) -> DemoCharge:
    return DemoCharge(
        description=f"{kind} {registration} {origin}-{destination}",
        quantity=service_units,
        unit_amount=unit_rate,
        days_ago=days_ago,
        details={
            "aircraft": registration,
            "aircraftType": aircraft_type,
            "route": f"{origin}-{destination}",
            "firs": firs,
            "countries": countries,
        },
    )


DEMO_TENANTS: tuple[DemoTenant, ...] = (
    DemoTenant(
        slug="acme",
        name="Acme Air Navigation",
        currency="EUR",
        invoice_number_prefix="ACME",
        payment_terms_days=30,
        customers=(
            DemoCustomer(
                external_ref="ACME-C-0001",
                name="Nordwind Charter GmbH",
                email="billing@nordwind-charter.example",
                country="DE",
                city="Frankfurt am Main",
                charges=(
                    _flight(
                        registration="D-ANWA",
                        aircraft_type="A20N",
                        origin="EDDF",
                        destination="LEPA",
                        firs=["EDGG", "LSAS", "LFMM", "LECB"],
                        countries=["DE", "CH", "FR", "ES"],
                        service_units="24.31",
                        unit_rate="75.82",
                        days_ago=40,
                    ),
                    _flight(
                        registration="D-ANWB",
                        aircraft_type="A20N",
                        origin="LEPA",
                        destination="EDDF",
                        firs=["LECB", "LFMM", "LSAS", "EDGG"],
                        countries=["ES", "FR", "CH", "DE"],
                        service_units="24.31",
                        unit_rate="75.82",
                        days_ago=39,
                    ),
                    _flight(
                        registration="D-ANWA",
                        aircraft_type="A20N",
                        origin="EDDF",
                        destination="LGAV",
                        firs=["EDMM", "LOVV", "LJLA", "LDZO", "LQSB", "LYBA", "LGGG"],
                        countries=["DE", "AT", "SI", "HR", "BA", "RS", "GR"],
                        service_units="31.07",
                        unit_rate="77.81",
                        days_ago=10,
                    ),
                    _flight(
                        registration="D-ANWA",
                        aircraft_type="A20N",
                        origin="EDDF",
                        destination="EDDF",
                        firs=["EDGG"],
                        countries=["DE"],
                        service_units="1.00",
                        unit_rate="312.40",
                        days_ago=10,
                        kind="Terminal charges",
                    ),
                ),
                # The terminal charge (position 3) stays unbilled: the next invoice takes it.
                invoices=(DemoInvoice(charges=(0, 1), state=OVERDUE), DemoInvoice(charges=(2,), state=DRAFT)),
            ),
            DemoCustomer(
                external_ref="ACME-C-0002",
                name="Alpine Flight Academy AG",
                email="accounts@alpine-flight.example",
                country="CH",
                city="Zurich",
                subscription=DemoSubscription(
                    plan_name="Airspace data feed (standard)",
                    unit_price="250.00",
                    billing_cadence="monthly",
                    started_days_ago=60,
                ),
                charges=(
                    DemoCharge(
                        description="Airspace data feed, last month",
                        unit_amount="250.00",
                        tax_rate="0.19",
                        days_ago=5,
                        of_subscription=True,
                    ),
                ),
                invoices=(DemoInvoice(charges=(0,), state=PAYMENT_DUE),),
            ),
            DemoCustomer(
                external_ref="ACME-C-0003",
                name="Baltic Air Taxi OU",
                email="finance@baltic-airtaxi.example",
                country="EE",
                city="Tallinn",
                subscription=DemoSubscription(
                    plan_name="Flight-plan validation API",
                    unit_price="99.00",
                    billing_cadence="monthly",
                    started_days_ago=90,
                    cancelled_by="SALESFORCE",
                ),
                charges=(
                    DemoCharge(
                        description="Flight-plan validation API, final month",
                        unit_amount="99.00",
                        tax_rate="0.19",
                        days_ago=20,
                        of_subscription=True,
                    ),
                ),
                # Cancelled invoice: its charge is billable again.
                invoices=(DemoInvoice(charges=(0,), state=CANCELLED),),
            ),
        ),
    ),
    DemoTenant(
        slug="globex",
        name="Globex Aviation",
        currency="USD",
        invoice_number_prefix="GLX",
        payment_terms_days=15,
        customers=(
            DemoCustomer(
                external_ref="GLX-C-0001",
                name="Pacific Island Airways",
                email="ap@pacific-island-airways.example",
                country="US",
                city="Honolulu",
                charges=(
                    _flight(
                        registration="N801PA",
                        aircraft_type="B38M",
                        origin="PHNL",
                        destination="NFFN",
                        firs=["KZAK", "NFFF"],
                        countries=["US", "FJ"],
                        service_units="52.40",
                        unit_rate="59.55",
                        days_ago=5,
                        kind="Oceanic en-route charges",
                    ),
                    _flight(
                        registration="N801PA",
                        aircraft_type="B38M",
                        origin="NFFN",
                        destination="PHNL",
                        firs=["NFFF", "KZAK"],
                        countries=["FJ", "US"],
                        service_units="52.40",
                        unit_rate="59.55",
                        days_ago=4,
                        kind="Oceanic en-route charges",
                    ),
                ),
                invoices=(DemoInvoice(charges=(0, 1), state=PAYMENT_DUE),),
            ),
            DemoCustomer(
                external_ref="GLX-C-0002",
                name="Mesa Aerial Survey LLC",
                email="billing@mesa-aerial.example",
                country="US",
                city="Phoenix",
                subscription=DemoSubscription(
                    plan_name="Obstacle database licence",
                    unit_price="4800.00",
                    billing_cadence="yearly",
                    started_days_ago=200,
                    tax_rate="0",
                ),
                charges=(
                    DemoCharge(
                        description="Obstacle database licence, annual fee",
                        unit_amount="4800.00",
                        days_ago=3,
                        of_subscription=True,
                    ),
                    DemoCharge(description="Custom survey corridor export", unit_amount="650.00", days_ago=2),
                ),
                invoices=(DemoInvoice(charges=(0, 1), state=DRAFT),),
            ),
            DemoCustomer(
                external_ref="GLX-C-0003",
                name="Great Lakes Air Ambulance",
                email="payables@greatlakes-airambulance.example",
                country="US",
                city="Chicago",
                subscription=DemoSubscription(
                    plan_name="Weather briefing service",
                    unit_price="180.00",
                    billing_cadence="monthly",
                    started_days_ago=120,
                    cancelled_by="API",
                    tax_rate="0",
                ),
                charges=(
                    DemoCharge(
                        description="Weather briefing service, two months ago",
                        unit_amount="180.00",
                        tax_rate="0.0725",
                        days_ago=60,
                        of_subscription=True,
                    ),
                    DemoCharge(
                        description="Weather briefing service, last month",
                        unit_amount="180.00",
                        tax_rate="0.0725",
                        days_ago=30,
                        of_subscription=True,
                    ),
                ),
                invoices=(
                    DemoInvoice(charges=(0,), state=OVERDUE),
                    DemoInvoice(charges=(1,), state=CANCELLED),
                ),
            ),
        ),
    ),
)

DEMO_TENANT_SLUGS: tuple[str, ...] = tuple(spec.slug for spec in DEMO_TENANTS)


@dataclass(frozen=True, slots=True)
class DemoToken:
    tenant_slug: str
    username: str
    role: str
    token: str


@dataclass(slots=True)
class SeedReport:
    tenants_created: int = 0
    customers_created: int = 0
    customers_existing: int = 0
    invoices_created: int = 0
    tokens: list[DemoToken] = field(default_factory=list)

    @property
    def created_anything(self) -> bool:
        return bool(self.tenants_created or self.customers_created or self.invoices_created)


def demo_seed() -> SeedReport:
    """The demo tenants, customers and role users exist; what already exists is left alone."""
    report = SeedReport()
    for spec in DEMO_TENANTS:
        tenant, created = Tenant.objects.get_or_create(
            slug=spec.slug,
            defaults={
                "name": spec.name,
                "default_currency": spec.currency,
                "invoice_number_prefix": spec.invoice_number_prefix,
                "payment_terms_days": spec.payment_terms_days,
            },
        )
        report.tenants_created += created
        for customer_spec in spec.customers:
            if Customer.objects.filter(tenant=tenant, external_ref=customer_spec.external_ref).exists():
                report.customers_existing += 1
                continue
            # One transaction per customer: a failure leaves no half-seeded customer to skip next time.
            with transaction.atomic():
                report.invoices_created += _seed_customer(
                    tenant=tenant, spec=customer_spec, currency=spec.currency
                )
            report.customers_created += 1
        report.tokens.extend(_ensure_role_user(tenant, suffix, role) for suffix, role in DEMO_USERS)
    log.info(
        "demo.seeded",
        tenants_created=report.tenants_created,
        customers_created=report.customers_created,
        invoices_created=report.invoices_created,
    )
    return report


def _seed_customer(*, tenant: Tenant, spec: DemoCustomer, currency: str) -> int:
    """One demo customer with its subscription, charges and invoices. Returns the invoices made."""
    now = timezone.now()
    today = business_today(now)
    customer = billing.customer_create(
        tenant=tenant,
        actor=ACTOR,
        name=spec.name,
        currency=currency,
        external_ref=spec.external_ref,
        email=spec.email,
        country=spec.country,
        city=spec.city,
    )
    subscription = None
    if spec.subscription is not None:
        sub = spec.subscription
        subscription = billing.subscription_create(
            tenant=tenant,
            actor=ACTOR,
            customer=customer,
            plan_name=sub.plan_name,
            unit_price=Decimal(sub.unit_price),
            currency=currency,
            billing_cadence=sub.billing_cadence,
            started_on=today - timedelta(days=sub.started_days_ago),
            tax_rate=Decimal(sub.tax_rate),
        )
    charges = [
        billing.charge_create(
            tenant=tenant,
            actor=ACTOR,
            customer=customer,
            description=charge.description,
            quantity=Decimal(charge.quantity),
            unit_amount=Decimal(charge.unit_amount),
            currency=currency,
            tax_rate=Decimal(charge.tax_rate),
            occurred_at=now - timedelta(days=charge.days_ago),
            details=charge.details,
            subscription=subscription if charge.of_subscription else None,
        )
        for charge in spec.charges
    ]
    if spec.subscription is not None and spec.subscription.cancelled_by:
        billing.subscription_cancel(
            subscription=subscription,
            actor=ACTOR,
            source=spec.subscription.cancelled_by,
            cancelled_at=now - timedelta(days=7),
        )
    for plan in spec.invoices:
        invoice = invoicing.invoice_create_draft(
            tenant=tenant,
            actor=ACTOR,
            customer=customer,
            charges=[charges[i] for i in plan.charges],
            memo="Demo data",
        )
        if plan.state == PAYMENT_DUE:
            invoicing.invoice_issue(invoice=invoice, actor=ACTOR, issue_date=today - timedelta(days=3))
        elif plan.state == OVERDUE:
            # Issued long enough ago that its due date has passed; the overdue run below picks it up.
            invoicing.invoice_issue(
                invoice=invoice,
                actor=ACTOR,
                issue_date=today - timedelta(days=45),
                due_date=today - timedelta(days=15),
            )
            invoicing.invoices_mark_overdue(tenant=tenant, today=today, actor=ACTOR)
        elif plan.state == CANCELLED:
            invoicing.invoice_cancel(invoice=invoice, actor=ACTOR, reason="Demo: raised in error, cancelled")
    return len(spec.invoices)


def _ensure_role_user(tenant: Tenant, suffix: str, role: str) -> DemoToken:
    """`<slug>-<suffix>`: a member of the tenant holding `role` (through the membership service), with a token."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    username = f"{tenant.slug}-{suffix}"
    with transaction.atomic():
        user, created = get_user_model().objects.get_or_create(
            username=username, defaults={"email": f"{username}@ledgerflow.localhost"}
        )
        if created:
            # Talks to the API with its token only: no password login.
            user.set_unusable_password()
            user.save(update_fields=["password"])
        tenancy.membership_create(tenant=tenant, user=user, roles=[role], actor=ACTOR)
        token, _ = Token.objects.get_or_create(user=user)
    return DemoToken(tenant_slug=tenant.slug, username=username, role=role, token=token.key)


def demo_tokens() -> dict[str, dict[str, str]]:
    """{tenant slug: {role: token}} of the demo users that exist (for scripts: `demo_tokens --json`)."""
    from rest_framework.authtoken.models import Token

    found: dict[str, dict[str, str]] = {}
    for spec in DEMO_TENANTS:
        for suffix, role in DEMO_USERS:
            token = Token.objects.filter(user__username=f"{spec.slug}-{suffix}").values_list("key", flat=True).first()
            if token:
                found.setdefault(spec.slug, {})[str(role)] = token
    return found
