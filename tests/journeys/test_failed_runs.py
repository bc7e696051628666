"""A FAILED run says why, in words a person can act on: over the API (status and result) and in the admin."""

import pytest
from django.db import connection

from core.actors import Actor
from core.errors import Conflict
from journeys import engine
from journeys.definition import Journey, Succeed, Task, register
from tests.journeys import contract
from tests.journeys.helpers import staff

pytestmark = pytest.mark.django_db
ACTOR = Actor.system("tests")


def _break_a_database_rule(ctx):
    # the same counter row twice: a unique violation, as draftInvoices met on a released charge
    with connection.cursor() as cursor:
        for _ in range(2):
            cursor.execute(
                "INSERT INTO invoicing_invoicenumbersequence (tenant_id, year, last_value) VALUES (%s, 2026, 0)",
                [ctx.tenant_id],
            )


class BooksClosed(Conflict):
    code = "books-closed"


def _refuse(ctx):
    raise BooksClosed("November's books are closed; reopen the period to bill it.")


register(Journey(name="test-constraint-failure", start="draftSomething",
                 states=[Task("draftSomething", _break_a_database_rule, next="done"), Succeed("done")]))
register(Journey(name="test-refused-failure", start="draftSomething",
                 states=[Task("draftSomething", _refuse, next="done"), Succeed("done")]))


def _failed_run(tenant, journey_name, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        run, _ = engine.run_start(journey_name=journey_name, tenant=tenant, actor=ACTOR, context={})
        for _ in range(engine.MAX_ATTEMPTS):
            engine.execute_step(run_pk=run.pk, state_id="draftSomething", actor=ACTOR)
    run.refresh_from_db()
    assert run.phase == "FAILED"
    return run


def test_failed_runs_status_and_result_carry_an_error_naming_the_step_and_rule_not_raw_sql(
    api, tenant_a, django_capture_on_commit_callbacks
):
    run = _failed_run(tenant_a.tenant, "test-constraint-failure", django_capture_on_commit_callbacks)

    status = api.get(f"/api/v1/journeys/{run.journey_id}").json()
    result = api.get(f"/api/v1/journeys/{run.journey_id}/result").json()

    contract.assert_status(status)
    assert status["error"] == result["error"]
    error = status["error"]
    assert error["code"] == "STEP_FAILED"
    assert "draftSomething failed 3 times" in error["reason"]
    assert "invoice_sequence_unique_year" in error["reason"] and "start the run again" in error["reason"]
    assert "duplicate key" not in error["reason"] and "DETAIL" not in error["reason"]


def test_a_business_refusal_gives_its_own_reason_and_code(api, tenant_a, django_capture_on_commit_callbacks):
    run = _failed_run(tenant_a.tenant, "test-refused-failure", django_capture_on_commit_callbacks)

    error = api.get(f"/api/v1/journeys/{run.journey_id}").json()["error"]

    assert error["code"] == "STEP_FAILED"
    assert "November's books are closed; reopen the period to bill it" in error["reason"]
    run.refresh_from_db()
    assert run.error["cause"] == "books-closed"


def test_running_run_has_no_error(api, tenant_a, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        run, _ = engine.run_start(journey_name="test-refused-failure", tenant=tenant_a.tenant, actor=ACTOR, context={})

    assert "error" not in api.get(f"/api/v1/journeys/{run.journey_id}").json()


def test_admin_run_page_shows_why_the_run_failed(client, tenant_a, django_capture_on_commit_callbacks):
    run = _failed_run(tenant_a.tenant, "test-constraint-failure", django_capture_on_commit_callbacks)
    client.force_login(staff(tenant_a.tenant, group="finance-approver", approver=True))

    html = client.get(f"/admin/journeys/journeyrun/{run.pk}/change/").content.decode()

    banner = html.split('class="errornote run-error"', 1)[1].split("</p>", 1)[0]
    assert "This run failed (STEP_FAILED)" in banner
    assert "draftSomething failed 3 times" in banner and "invoice_sequence_unique_year" in banner
    assert "duplicate key" not in banner
