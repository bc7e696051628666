from datetime import date
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.authtoken.models import Token

from billing.models import Charge, Customer, Payment, Subscription
from tenancy.models import Membership, Tenant
from tenancy.roles import Role


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant

    name = factory.Sequence(lambda n: f"Tenant {n}")
    slug = factory.Sequence(lambda n: f"tenant-{n}")
    default_currency = "EUR"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")


# What a test member may do unless the test says otherwise: run the books and manage the tenant.
# Deciding approvals is granted explicitly (tests.conftest.grant_approver), as the finance-approver
# group was before roles; the role matrix (tests/core/test_roles.py) builds one member per role.
DEFAULT_TEST_ROLES = (Role.FINANCE_OPERATOR, Role.TENANT_ADMIN)


class MembershipFactory(factory.django.DjangoModelFactory):
    """Through the membership service, like the admin and seed_demo."""

    class Meta:
        model = Membership

    tenant = factory.SubFactory(TenantFactory)
    user = factory.SubFactory(UserFactory)
    roles = DEFAULT_TEST_ROLES

    @classmethod
    def _create(cls, model_class, *, tenant, user, roles):
        from core.actors import Actor
        from tenancy.services import membership_create

        # grant_approver() on a user with no membership yet: the role comes with their first one.
        roles = [*roles, *getattr(user, "pending_test_roles", ())]
        return membership_create(tenant=tenant, user=user, roles=roles, actor=Actor.system("tests"))


class TokenFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Token

    user = factory.SubFactory(UserFactory)


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    tenant = factory.SubFactory(TenantFactory)
    name = factory.Sequence(lambda n: f"Customer {n}")
    email = factory.Sequence(lambda n: f"billing{n}@customer.example")
    external_ref = factory.Sequence(lambda n: f"CUST-{n:05d}")
    currency = "EUR"
    country = "DE"


class SubscriptionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Subscription

    customer = factory.SubFactory(CustomerFactory)
    tenant = factory.SelfAttribute("customer.tenant")
    plan_name = "Flight planning Pro"
    unit_price = Decimal("99.00")
    currency = factory.SelfAttribute("customer.currency")
    started_on = date(2026, 1, 1)


class ChargeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Charge

    customer = factory.SubFactory(CustomerFactory)
    tenant = factory.SelfAttribute("customer.tenant")
    description = "Route charge EDDF-LFPG"
    quantity = Decimal("1")
    unit_amount = Decimal("120.50")
    currency = factory.SelfAttribute("customer.currency")
    tax_rate = Decimal("0.19")
    occurred_at = factory.LazyFunction(timezone.now)
    details = factory.LazyFunction(
        lambda: {"aircraft": "D-ABCD", "route": "EDDF-LFPG", "firs": ["EDGG", "LFFF"]}
    )


class PaymentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Payment

    customer = factory.SubFactory(CustomerFactory)
    tenant = factory.SelfAttribute("customer.tenant")
    method = "bank_transfer"
    amount = Decimal("100.00")
    currency = factory.SelfAttribute("customer.currency")


class BankAccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "reconciliation.BankAccount"

    tenant = factory.SubFactory(TenantFactory)
    name = "Operating account"
    iban = "DE89370400440532013000"
    bic = "COBADEFFXXX"
    currency = "EUR"


class CsvProfileFactory(factory.django.DjangoModelFactory):
    """The column profile of tests/reconciliation/samples/csv_sample.csv (a German bank's export)."""

    class Meta:
        model = "reconciliation.CsvProfile"

    bank_account = factory.SubFactory(BankAccountFactory)
    delimiter = ";"
    date_format = "%d.%m.%Y"
    decimal_separator = ","
    booking_date_column = "Buchungstag"
    value_date_column = "Wertstellung"
    amount_column = "Betrag"
    currency_column = "Waehrung"
    transaction_id_column = "Transaktions-ID"
    counterparty_name_column = "Auftraggeber"
    counterparty_iban_column = "IBAN"
    reference_column = "Referenz"
    remittance_column = "Verwendungszweck"
    status_column = "Status"
    pending_value = "vorgemerkt"


class PaymentProviderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "billing.PaymentProvider"

    tenant = factory.SubFactory(TenantFactory)
    slug = factory.Sequence(lambda n: f"rail-{n}")
    name = "Card rail"
    signing_secret = factory.Sequence(lambda n: f"whsec_test_{n:04d}")
