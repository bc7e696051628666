"""What a scheduled batch run ends with when there is nothing to bill, or when it fails."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from core.actors import Actor
from invoicing.models import Invoice
from journeys import engine, scheduling
from journeys.models import JourneyApproval, JourneyRun
from tests.factories import CustomerFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db
ACTOR = Actor.system("tests")
NOW = datetime(2026, 12, 1, 6, 0, 5, tzinfo=UTC)


def _configure(tenant, user, key="main"):
    context = {"tenantId": tenant.slug, "batchId": key, "firstRunAt": NOW.isoformat(), "interval": "P1M",
               "maxRuns": 12, "gracePeriodDuration": "P7D", "reminderGapDuration": "P7D",
               "billingPeriodStart": "2026-11-01", "billingPeriodEnd": "2026-11-30"}
    return scheduling.schedule_configure(
        journey_name="monthly-invoicing-batch", tenant=tenant, key=key, first_run_at=NOW, interval="P1M",
        max_runs=12, context=context, user=user, actor=ACTOR,
    )


def _fire(schedule, now=NOW):
    (run,) = scheduling.schedule_fire(schedule_id=schedule.pk, actor=ACTOR, now=now)
    return run


def _until_pause(run):
    for _ in range(6):
        run.refresh_from_db()
        if run.phase != "RUNNING" or run.current_state == "waitForFinanceApproval":
            break
        engine.execute_step(run_pk=run.pk, state_id=run.current_state, actor=ACTOR)
    run.refresh_from_db()
    return run


def test_second_occurrence_of_a_billed_period_ends_nothing_to_bill_without_asking_for_approval(
    api, tenant_a, django_capture_on_commit_callbacks
):
    # given November already drafted by an earlier run of the batch
    customer = CustomerFactory(tenant=tenant_a.tenant)
    SubscriptionFactory(customer=customer, unit_price=Decimal("100.00"), tax_rate=Decimal("0.19"),
                        started_on=date(2026, 1, 1))
    schedule = _configure(tenant_a.tenant, tenant_a.user)  # a batch pinned to November
    with django_capture_on_commit_callbacks(execute=False):
        first = _until_pause(_fire(schedule))
    assert first.current_state == "waitForFinanceApproval"

    # when the next occurrence bills the same period again
    with django_capture_on_commit_callbacks(execute=False):
        second = _until_pause(_fire(schedule, datetime(2027, 1, 1, 6, 0, 5, tzinfo=UTC)))

    # then it drafts nothing, asks nobody, and says so
    assert (second.phase, second.output["status"]) == ("SUCCEEDED", "NOTHING_TO_BILL")
    assert second.output["lastRun"]["invoiceCount"] == 0
    assert not JourneyApproval.objects.filter(run=second).exists()
    assert "waitForFinanceApproval" not in set(second.steps.values_list("state", flat=True))
    assert Invoice.objects.filter(batch_run=second).count() == 0
    config = api.get(f"/api/v1/journeys/{second.parent.journey_id}/result").json()
    assert config["output"]["lastRun"]["status"] == "NOTHING_TO_BILL"


def test_tenant_with_nothing_to_bill_gets_no_approval_step(tenant_a, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        run = _until_pause(_fire(_configure(tenant_a.tenant, tenant_a.user)))

    assert (run.phase, run.output["status"]) == ("SUCCEEDED", "NOTHING_TO_BILL")


def test_failed_scheduled_run_leaves_lastrun_failed_with_its_reason_on_the_configuration(
    api, tenant_a, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        run = _fire(_configure(tenant_a.tenant, tenant_a.user))
        # the batch's context loses its period: drafting cannot work, every attempt fails
        JourneyRun.objects.filter(pk=run.pk).update(context={**run.context, "billingPeriodStart": "not a date"})
        for _ in range(engine.MAX_ATTEMPTS):
            engine.execute_step(run_pk=run.pk, state_id="draftInvoices", actor=ACTOR)
    run.refresh_from_db()
    assert run.phase == "FAILED"

    config = api.get(f"/api/v1/journeys/{run.parent.journey_id}/result").json()

    last_run = config["output"]["lastRun"]
    assert last_run["status"] == "FAILED" and last_run["journeyId"] == run.journey_id
    assert last_run["error"]["code"] == "STEP_FAILED"
    assert "Step draftInvoices failed 3 times" in last_run["error"]["reason"]
