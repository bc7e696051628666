"""`manage.py journey start|status|approve|cancel`: the same services as the API, errors without tracebacks."""

import subprocess
import sys
from datetime import date
from decimal import Decimal
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection

from journeys.models import JourneyApproval, JourneyRun, JourneySchedule
from tests.conftest import grant_approver, subprocess_env, wait_for
from tests.factories import CustomerFactory, MembershipFactory, SubscriptionFactory, UserFactory
from tests.journeys.helpers import waiting_monthly_batch


def journey(*args):
    out, err = StringIO(), StringIO()
    call_command("journey", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def run(tenant_a, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        return waiting_monthly_batch(tenant_a.tenant, tenant_a.user)


@pytest.fixture
def approver(tenant_a):
    user = grant_approver(UserFactory(username="fiona"))
    MembershipFactory(tenant=tenant_a.tenant, user=user)
    return user


START = [
    "start",
    "monthly-invoicing-batch",
    "--tenant",
    "acme",
    "--batch-id",
    "main",
    "--interval",
    "P1M",
    "--max-runs",
    "12",
]


def test_start_configures_the_schedule_like_the_api(tenant_a):
    out, _ = journey(
        *START, "--first-run-at", "2099-12-01T06:00:00Z", "--grace", "P10D", "--user", tenant_a.user.username
    )

    schedule = JourneySchedule.objects.get()
    assert (schedule.key, schedule.interval, schedule.max_runs, schedule.started_by) == (
        "main",
        "P1M",
        12,
        tenant_a.user,
    )
    assert schedule.context == {
        "tenantId": "acme",
        "batchId": "main",
        "firstRunAt": "2099-12-01T06:00:00+00:00",
        "interval": "P1M",
        "maxRuns": 12,
        "gracePeriodDuration": "P10D",
        "reminderGapDuration": "P7D",
    }
    assert schedule.periodic_task.enabled
    assert schedule.config_run.journey_id in out and "SCHEDULED" in out


def test_start_follow_before_the_first_run_says_when_it_starts(tenant_a):
    out, _ = journey(*START, "--first-run-at", "2099-12-01T06:00:00+01:00", "--follow")

    assert "Nothing to follow yet: the first run starts at 2099-12-01T06:00:00+01:00." in out
    assert JourneyRun.objects.count() == 1  # the configuration run only


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant", "nobody"], "No tenant 'nobody'"),
        (["--first-run-at", "2099-12-01T06:00:00"], "needs an offset"),
        (["--first-run-at", "next monday"], "not an RFC 3339"),
        (["--interval", "monthly"], "--interval"),
        (["--max-runs", "0"], "--max-runs"),
        (["--batch-id", "a b"], "--batch-id"),
        (["--user", "ghost"], "No user 'ghost'"),
    ],
)
def test_bad_start_is_refused_and_configures_nothing(tenant_a, args, message):
    base = dict(zip(START[2::2], START[3::2], strict=True)) | {"--first-run-at": "2099-12-01T06:00:00Z"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))

    with pytest.raises(CommandError, match=message):
        journey("start", "monthly-invoicing-batch", *[part for pair in base.items() for part in pair])

    assert not JourneySchedule.objects.exists()


def test_status_prints_the_approval_summary_and_how_to_decide(run):
    out, _ = journey("status", run.journey_id)

    assert f"monthly-invoicing-batch {run.journey_id}" in out
    assert "RUNNING at waitForFinanceApproval (waiting for approval)" in out
    assert f"manage.py journey approve {run.journey_id}" in out
    assert '"EUR": "357.00"' in out and "invoiceCount: 1" in out


def test_status_follow_on_a_paused_run_shows_the_bars_and_returns(run):
    out, err = journey("status", run.journey_id, "--follow", "--timeout", "10")

    assert "Paused at waitForFinanceApproval, waiting for approval." in out
    assert "2/9" in err  # drafted and validated of the nine steps on the happy path
    assert "invoices sent" in err and "0/1" in err


def test_unknown_journey_is_a_clear_error(db):
    with pytest.raises(CommandError, match="No journey with id 'nope'"):
        journey("status", "nope")


def test_approve_decides_through_run_decide(run, approver, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        out, _ = journey("approve", run.journey_id, "--user", "fiona", "--comment", "matches the contracts")

    run.refresh_from_db()
    assert run.current_state == "sendInvoices"
    decision = JourneyApproval.objects.get(run=run)
    assert (decision.decision, decision.decided_by, decision.comment) == (
        "APPROVED",
        approver,
        "matches the contracts",
    )
    assert "moves on to sendInvoices" in out


def test_reject_sends_the_batch_to_record_its_rejection(run, approver, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        journey("approve", run.journey_id, "--user", "fiona", "--reject", "--comment", "wrong prices")

    run.refresh_from_db()
    assert run.current_state == "recordRejection"
    assert JourneyApproval.objects.get(run=run).decision == "REJECTED"


def test_preparer_and_non_approvers_are_refused(run, tenant_a):
    grant_approver(tenant_a.user)
    UserFactory(username="bystander")

    with pytest.raises(CommandError, match="started this run cannot approve"):
        journey("approve", run.journey_id, "--user", tenant_a.user.username)
    with pytest.raises(CommandError, match="finance-approver role"):
        journey("approve", run.journey_id, "--user", "bystander")

    run.refresh_from_db()
    assert run.current_state == "waitForFinanceApproval"


def test_approving_a_run_not_waiting_is_refused(run, approver):
    journey("cancel", run.journey_id)

    with pytest.raises(CommandError, match="not waiting for a decision"):
        journey("approve", run.journey_id, "--user", "fiona")


def test_cancel_ends_the_run_and_is_idempotent(run):
    first, _ = journey("cancel", run.journey_id, "--reason", "wrong month")
    second, _ = journey("cancel", run.journey_id)

    run.refresh_from_db()
    assert (run.phase, run.error["code"], run.error["reason"]) == (
        "FAILED",
        "JOURNEY_CANCELLED",
        "wrong month",
    )
    assert "Cancelled" in first and "already ended" in second


@pytest.mark.django_db
def test_errors_exit_non_zero_without_a_traceback():
    env = subprocess_env(
        DJANGO_SETTINGS_MODULE="config.settings_test",
        # the test database, so the command finds the schema (and no journeys)
        DATABASE_URL=f"postgres://{connection.settings_dict['USER']}@{connection.settings_dict['HOST']}:"
        f"{connection.settings_dict['PORT']}/{connection.settings_dict['NAME']}",
        LEDGERFLOW_TEST_REDIS_URL=settings.REDIS_URL,
    )

    result = subprocess.run(
        [sys.executable, "manage.py", "journey", "status", "nope"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert "No journey with id 'nope'" in result.stderr
    assert "Traceback" not in result.stderr


def test_start_follow_runs_to_the_approval_pause_through_a_real_worker(celery_worker, tenant_a):
    customer = CustomerFactory(tenant=tenant_a.tenant, email="ap@airline.example")
    SubscriptionFactory(
        customer=customer, unit_price=Decimal("300.00"), tax_rate=Decimal("0.19"), started_on=date(2026, 1, 1)
    )

    out, err = journey(
        *START,
        "--first-run-at",
        "2026-11-01T06:00:00Z",
        "--user",
        tenant_a.user.username,
        "--follow",
        "--timeout",
        "60",
    )

    assert "Following run" in out and "Paused at waitForFinanceApproval, waiting for approval." in out
    assert "2/9" in err
    run = wait_for(lambda: JourneyRun.objects.filter(current_state="waitForFinanceApproval").first())
    assert run.context["batch"]["invoiceCount"] == 1
