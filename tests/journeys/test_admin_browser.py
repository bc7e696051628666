"""A finance approver approves a monthly batch in the Django admin, in headless Chromium (Playwright)."""

import os
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission

from journeys.models import JourneyApproval, JourneyRun
from tests.conftest import grant_approver
from tests.factories import MembershipFactory, UserFactory
from tests.journeys.helpers import waiting_monthly_batch

# Debian's Chromium, installed by `make test`; Playwright never downloads a browser of its own here.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct horse battery staple"

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (`make chromium` installs it)"
)


def approver_for(tenant):
    """Staff who may see runs and invoices and approve (the finance-approver group is flushed with the data)."""
    user = UserFactory(username="fiona", is_staff=True)
    user.set_password(PASSWORD)
    user.save()
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label__in=["journeys", "invoicing"], codename__startswith="view_"
        )
    )
    MembershipFactory(tenant=tenant, user=user)
    return grant_approver(user)


def test_approver_approves_a_batch_in_the_admin_from_a_browser(live_server, tenant_a, tmp_path):
    from playwright.sync_api import sync_playwright

    # given: a batch drafted and validated, waiting for approval (all database work before the
    # browser starts: Playwright's event loop would make Django refuse ORM calls in this thread)
    run = waiting_monthly_batch(tenant_a.tenant, tenant_a.user)
    approver = approver_for(tenant_a.tenant)
    shots = Path(os.environ.get("BROWSER_SCREENSHOT_DIR") or tmp_path)

    # when: the approver logs in, opens the queue, opens the run, comments and approves
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(15_000)
            page.goto(f"{live_server.url}/admin/login/?next=/admin/journeys/pendingapproval/")
            page.fill("#id_username", "fiona")
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_url("**/admin/journeys/pendingapproval/")
            queue_row = page.inner_text("#result_list")
            page.click(f'#result_list a:has-text("{run.journey_id}")')
            page.wait_for_selector("#approve-button")
            approval_page = page.inner_text("#content-main")
            page.screenshot(path=str(shots / "approval-page.png"), full_page=True)
            page.fill("#id_comment", "Checked against the contracts.")
            page.click("#approve-button")
            page.wait_for_selector("ul.messagelist li.success")
            success = page.inner_text("ul.messagelist li.success")
            page.screenshot(path=str(shots / "after-approval.png"), full_page=True)
        finally:
            browser.close()

    # then
    assert "2026-11-01 – 2026-11-30" in queue_row and "EUR 357.00" in queue_row
    assert "Lufthansa Cargo" in approval_page and "No blocking findings." in approval_page
    assert success.startswith("Approved: monthly-invoicing-batch") and "sendInvoices" in success
    run = JourneyRun.objects.get(pk=run.pk)
    assert run.current_state not in ("draftInvoices", "validateDrafts", "waitForFinanceApproval")
    decision = JourneyApproval.objects.get(run=run)
    assert (decision.decision, decision.decided_by, decision.comment) == (
        "APPROVED",
        approver,
        "Checked against the contracts.",
    )
