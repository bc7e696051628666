"""The journeys admin: the waiting-for-approval queue, its decision buttons (run_decide's rules) and
run timelines, scoped by tenant."""

from decimal import Decimal

import pytest
from django.contrib.messages import get_messages

from core.actors import Actor
from invoicing.models import Invoice
from journeys import engine
from journeys.models import ApprovalPolicy, JourneyApproval
from tests.conftest import grant_approver
from tests.factories import TenantFactory
from tests.journeys import sample  # noqa: F401 - registers the kernel-sample journey
from tests.journeys.helpers import staff, waiting_monthly_batch

ACTOR = Actor.system("tests")
QUEUE = "/admin/journeys/pendingapproval/"


@pytest.fixture
def run(tenant_a, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        return waiting_monthly_batch(tenant_a.tenant, tenant_a.user)


@pytest.fixture
def approver(tenant_a):
    return staff(tenant_a.tenant, group="finance-approver", approver=True)


def decide(client, run, decision, comment="", step_id="approveInvoiceBatch"):
    return client.post(
        f"{QUEUE}{run.pk}/decide/",
        {"step_id": step_id, "decision": decision, "comment": comment},
        follow=True,
    )


def texts(response):
    return [str(m) for m in get_messages(response.wsgi_request)] or [
        str(m) for m in response.context["messages"]
    ]


def test_queue_lists_waiting_runs_with_period_invoice_count_and_totals(client, run, approver):
    client.force_login(approver)

    page = client.get(QUEUE)

    assert page.status_code == 200
    html = page.content.decode()
    assert run.journey_id in html
    assert "2026-11-01 – 2026-11-30" in html
    assert "EUR 357.00" in html  # 300 + 19 % tax
    assert ">1<" in html  # one invoice


def test_approval_page_shows_drafts_findings_timeline_and_buttons(client, run, approver):
    client.force_login(approver)
    invoice = Invoice.objects.get(batch_run=run)

    page = client.get(f"{QUEUE}{run.pk}/change/")

    assert page.status_code == 200
    html = page.content.decode()
    assert f"/admin/invoicing/invoice/{invoice.pk}/change/" in html
    assert "Lufthansa Cargo" in html
    assert "No blocking findings." in html
    assert html.count('class="timeline-step"') == 2  # draftInvoices, validateDrafts
    assert 'name="csrfmiddlewaretoken"' in html
    assert 'value="APPROVED"' in html and 'value="REJECTED"' in html


def test_approve_moves_the_run_on_and_records_who_and_why(
    client, run, approver, django_capture_on_commit_callbacks
):
    client.force_login(approver)

    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        response = decide(client, run, "APPROVED", "checked against the contract")

    run.refresh_from_db()
    assert run.current_state == "sendInvoices"
    decision = JourneyApproval.objects.get(run=run)
    assert (decision.decision, decision.decided_by, decision.comment) == (
        "APPROVED",
        approver,
        "checked against the contract",
    )
    assert len(enqueued) == 1  # the sendInvoices step, after commit
    assert response.status_code == 200
    assert any(m.startswith("Approved") for m in texts(response))


def test_reject_ends_the_batch_through_record_rejection(
    client, run, approver, django_capture_on_commit_callbacks
):
    client.force_login(approver)

    with django_capture_on_commit_callbacks(execute=False):
        response = decide(client, run, "REJECTED", "wrong prices")

    run.refresh_from_db()
    assert run.current_state == "recordRejection"
    assert JourneyApproval.objects.get(run=run).decision == "REJECTED"
    assert any(m.startswith("Rejected") for m in texts(response))


def test_preparer_cannot_approve_in_the_admin_and_nothing_changes(client, run, tenant_a):
    preparer = tenant_a.user
    preparer.is_staff = True
    preparer.save()
    grant_approver(preparer)
    client.force_login(preparer)

    response = decide(client, run, "APPROVED")

    assert response.status_code == 200
    assert any("started this run cannot approve" in m for m in texts(response))
    run.refresh_from_db()
    assert run.current_state == "waitForFinanceApproval"
    assert not JourneyApproval.objects.exists()


def test_member_without_the_approver_role_is_refused(client, run, tenant_a):
    operator = staff(tenant_a.tenant, group="finance-operator")
    client.force_login(operator)

    assert client.get(f"{QUEUE}{run.pk}/change/").status_code == 200  # may look
    response = decide(client, run, "APPROVED")

    assert any("finance-approver role" in m for m in texts(response))
    run.refresh_from_db()
    assert run.current_state == "waitForFinanceApproval"


def test_second_decision_is_refused_with_a_message(
    client, run, approver, tenant_a, django_capture_on_commit_callbacks
):
    other = staff(tenant_a.tenant, group="finance-approver", approver=True)
    client.force_login(approver)
    with django_capture_on_commit_callbacks(execute=False):
        decide(client, run, "APPROVED")
    client.force_login(other)

    response = decide(client, run, "REJECTED")

    assert any("not waiting for a decision" in m for m in texts(response))
    assert JourneyApproval.objects.get(run=run).decision == "APPROVED"


def test_other_tenants_staff_cannot_see_or_decide_the_run(client, run):
    outsider = staff(TenantFactory(), group="finance-approver", approver=True)
    client.force_login(outsider)

    assert run.journey_id not in client.get(QUEUE).content.decode()
    assert client.get(f"{QUEUE}{run.pk}/change/").status_code == 404
    assert (
        client.post(
            f"{QUEUE}{run.pk}/decide/", {"step_id": "approveInvoiceBatch", "decision": "APPROVED"}
        ).status_code
        == 404
    )
    assert client.get(f"/admin/journeys/journeyrun/{run.pk}/change/").status_code == 302  # "does not exist"
    assert run.journey_id not in client.get("/admin/journeys/journeystep/").content.decode()
    run.refresh_from_db()
    assert run.current_state == "waitForFinanceApproval"


def test_bad_decision_and_get_are_refused(client, run, approver):
    client.force_login(approver)

    assert client.get(f"{QUEUE}{run.pk}/decide/").status_code == 405
    response = decide(client, run, "MAYBE")

    assert any(m.startswith("Nothing was decided") for m in texts(response))
    run.refresh_from_db()
    assert run.current_state == "waitForFinanceApproval"


def test_run_page_shows_the_timeline_with_steps_and_decisions(
    client, run, approver, django_capture_on_commit_callbacks
):
    client.force_login(approver)
    with django_capture_on_commit_callbacks(execute=False):
        decide(client, run, "APPROVED", "fine")

    page = client.get(f"/admin/journeys/journeyrun/{run.pk}/change/")

    html = page.content.decode()
    assert page.status_code == 200
    assert html.count('class="timeline-step"') == 3  # draft, validate, the approval step
    assert 'class="timeline-decision"' in html and "fine" in html
    assert "sendInvoices" in html
    # a decided run's approval page sends the reader to the run
    assert client.get(f"{QUEUE}{run.pk}/change/").status_code == 302


def test_other_journeys_show_their_approval_summary_as_key_values(
    client, tenant_a, approver, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        run, _ = engine.run_start(
            journey_name="kernel-sample",
            tenant=tenant_a.tenant,
            actor=ACTOR,
            context={},
            started_by=tenant_a.user,
        )
        engine.execute_step(run_pk=run.pk, state_id="prepare", actor=ACTOR)
    client.force_login(approver)

    page = client.get(f"{QUEUE}{run.pk}/change/")

    html = page.content.decode()
    assert 'id="approval-summary"' in html
    assert "<th>prepared</th><td>1</td>" in html


def test_schedule_links_to_its_beat_entry(admin_client, run):
    page = admin_client.get("/admin/journeys/journeyschedule/")

    assert page.status_code == 200
    assert (
        f"/admin/django_celery_beat/periodictask/{run.schedule.periodic_task_id}/change/"
        in page.content.decode()
    )


def test_approval_policy_is_edited_in_the_admin_within_its_constraint(admin_client, tenant_a):
    url = "/admin/journeys/approvalpolicy/add/"
    body = {
        "tenant": tenant_a.tenant.pk,
        "journey_name": "monthly-invoicing-batch",
        "mode": "above_threshold",
        "threshold_currency": "EUR",
    }

    refused = admin_client.post(url, body)
    saved = admin_client.post(url, {**body, "threshold_amount": "1000.00"})

    assert (
        refused.status_code == 200 and "errornote" in refused.content.decode()
    )  # no threshold: the constraint speaks
    assert saved.status_code == 302
    policy = ApprovalPolicy.objects.get()
    assert (policy.mode, policy.threshold_amount) == ("above_threshold", Decimal("1000.00"))
