"""A monthly batch run paused at its approval step, and staff users of a tenant."""

from datetime import UTC, date, datetime
from decimal import Decimal

from core.actors import Actor
from journeys import engine, scheduling
from journeys.models import JourneyRun
from tests.conftest import grant_approver
from tests.factories import CustomerFactory, MembershipFactory, SubscriptionFactory, UserFactory

ACTOR = Actor.system("tests")


def waiting_monthly_batch(tenant, preparer) -> JourneyRun:
    """A monthly batch run drafted and validated, paused at its approval step (no worker: steps by hand)."""
    run = drafted_monthly_batch(tenant, preparer)
    assert run.current_state == "waitForFinanceApproval"
    return run


def drafted_monthly_batch(tenant, preparer, *, unit_price: str = "300.00") -> JourneyRun:
    """A monthly batch run drafted and validated by hand (no worker), wherever that took it."""
    customer = CustomerFactory(tenant=tenant, name="Lufthansa Cargo", email="ap@airline.example")
    SubscriptionFactory(
        customer=customer, unit_price=Decimal(unit_price), tax_rate=Decimal("0.19"), started_on=date(2026, 1, 1)
    )
    schedule = scheduling.schedule_configure(
        journey_name="monthly-invoicing-batch",
        tenant=tenant,
        key="main",
        first_run_at=datetime(2026, 12, 1, 6, tzinfo=UTC),
        interval="P1M",
        max_runs=12,
        context={
            "tenantId": tenant.slug,
            "batchId": "main",
            "firstRunAt": "2026-12-01T06:00:00Z",
            "interval": "P1M",
            "maxRuns": 12,
        },
        user=preparer,
        actor=ACTOR,
    )
    (run,) = scheduling.schedule_fire(
        schedule_id=schedule.pk, actor=ACTOR, now=datetime(2026, 12, 1, 6, 1, tzinfo=UTC)
    )
    for state in ("draftInvoices", "validateDrafts"):
        engine.execute_step(run_pk=run.pk, state_id=state, actor=ACTOR)
    run.refresh_from_db()
    return run


def staff(tenant, *, group: str, approver: bool = False):
    user = UserFactory(is_staff=True)
    MembershipFactory(tenant=tenant, user=user, roles=[group])
    return grant_approver(user) if approver else user
