"""The approval policy in the kernel, for every journey: who may decide (a registered check), maker-
checker, and the tenant's auto-approval (the monthly batch included), shown in the admin."""

from decimal import Decimal

import pytest

from core.actors import Actor
from core.errors import ApplicationError
from journeys import engine, public
from journeys.models import ApprovalPolicy, JourneyApproval, JourneyStep
from tests.conftest import grant_approver
from tests.factories import MembershipFactory, UserFactory
from tests.journeys.helpers import drafted_monthly_batch, staff, waiting_monthly_batch

ACTOR = Actor.system("tests")
pytestmark = pytest.mark.django_db


@pytest.fixture
def run(tenant_a, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        return waiting_monthly_batch(tenant_a.tenant, tenant_a.user)


@pytest.fixture
def decider_check():
    """Registers a check for the test and puts the project's check (the roles table) back afterwards."""
    yield public.set_decider_check
    public.set_decider_check(None)


def _decide(run, user, decision="APPROVED"):
    return engine.run_decide(
        run=run, step_id="approveInvoiceBatch", decision=decision, comment="", user=user, actor=ACTOR
    )


@pytest.mark.parametrize(
    ("mode", "threshold", "unit_price", "waits"),
    [
        ("always", None, "100.00", True),
        ("never", None, "100.00", False),
        ("above_threshold", "500", "100.00", False),  # 119.00 EUR within 500
        ("above_threshold", "500", "1000.00", True),  # 1190.00 EUR above it
    ],
)
def test_monthly_batch_follows_the_tenants_approval_policy(
    tenant_a, mode, threshold, unit_price, waits, django_capture_on_commit_callbacks
):
    # given the tenant's policy for the monthly batch
    ApprovalPolicy.objects.create(
        tenant=tenant_a.tenant,
        journey_name="monthly-invoicing-batch",
        mode=mode,
        threshold_amount=Decimal(threshold) if threshold else None,
        threshold_currency="EUR" if threshold else "",
    )
    # when the batch is drafted and valid
    with django_capture_on_commit_callbacks(execute=False):
        run = drafted_monthly_batch(tenant_a.tenant, tenant_a.user, unit_price=unit_price)

    # then it waits for a person, or the kernel approved it and it goes on to send
    assert run.current_state == ("waitForFinanceApproval" if waits else "sendInvoices")
    if not waits:
        assert run.context["approval"]["auto"] is True and run.context["approval"]["policy"] == mode
        approval = JourneyStep.objects.get(run=run, state="waitForFinanceApproval")
        assert approval.outcome == "APPROVED" and mode in approval.detail
        assert not JourneyApproval.objects.filter(run=run).exists()  # no person decided


def test_the_registered_decider_check_says_who_may_decide(run, tenant_a, decider_check):
    # given a user who is not a finance approver, and a check that lets exactly that user decide
    member = UserFactory()
    MembershipFactory(tenant=tenant_a.tenant, user=member)
    asked = []

    def check(user, tenant_id, permission):
        asked.append((user.pk, tenant_id, permission))
        return user.pk == member.pk

    decider_check(check)

    # when they decide, then the kernel asked the check, with the policy's permission, and took it
    decided = _decide(run, member)
    assert decided.current_state == "sendInvoices"
    assert asked == [(member.pk, tenant_a.tenant.pk, "journeys.decide")]


def test_a_check_that_refuses_stops_even_a_finance_approver(run, tenant_a, decider_check):
    approver = grant_approver(UserFactory())
    MembershipFactory(tenant=tenant_a.tenant, user=approver)
    decider_check(lambda user, tenant_id, permission: False)

    with pytest.raises(ApplicationError) as refused:
        _decide(run, approver)

    assert refused.value.status == 403
    run.refresh_from_db()
    assert run.current_state == "waitForFinanceApproval"


def test_maker_checker_holds_whatever_the_check_says(run, tenant_a, decider_check):
    decider_check(lambda user, tenant_id, permission: True)

    with pytest.raises(ApplicationError, match="started this run"):
        _decide(run, tenant_a.user)  # the preparer

    assert not JourneyApproval.objects.filter(run=run).exists()


def test_the_approval_page_shows_the_policy(client, run, tenant_a):
    ApprovalPolicy.objects.create(
        tenant=tenant_a.tenant,
        journey_name="monthly-invoicing-batch",
        mode="above_threshold",
        threshold_amount=Decimal("250"),
        threshold_currency="EUR",
    )
    client.force_login(staff(tenant_a.tenant, group="finance-approver", approver=True))

    page = client.get(f"/admin/journeys/pendingapproval/{run.pk}/change/").content.decode()

    assert 'id="approval-policy"' in page
    assert "permission journeys.decide in this tenant" in page
    assert "the person who started the run may not decide" in page
    assert "when every total is within 250.0000 EUR" in page
