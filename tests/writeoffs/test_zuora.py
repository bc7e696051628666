"""The Zuora adapter against a local fake of its API: the real `requests` path, retries, idempotency."""

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from tests.writeoffs.fake_zuora import FakeZuora
from tests.writeoffs.helpers import ACTOR, cancelled_subscription, start_run, step, unbalanced_invoice
from writeoffs import services
from writeoffs.models import WriteOffCandidate
from writeoffs.providers import WriteOffFailed, zuora
from writeoffs.providers.zuora import ZuoraClient, ZuoraError

DAY = date(2026, 3, 10)


@pytest.fixture
def fake():
    server = FakeZuora()
    base_url = server.start()
    server.base_url = base_url
    zuora._TOKENS.clear()
    yield server
    server.stop()


def client(fake, **kwargs):
    return ZuoraClient(base_url=fake.base_url, client_id="ledgerflow", client_secret="s3cret", sleep=lambda s: None, **kwargs)


def posts(fake):
    return [(path, key) for method, path, key in fake.calls if method == "POST" and path.startswith("/v1/")]


def test_fewest_item_and_tax_adjustments_bring_the_invoice_to_zero(fake):
    fake.add_invoice("INV-1", lines=[("50", "9.50"), ("100", "19"), ("20", "3.80")], balance="122.80")

    result = client(fake).write_off_invoice(invoice_key="INV-1", business_date=DAY, reason_code="Write-off", comment="c")

    assert (result.status, result.written_off, result.adjustments) == ("succeeded", Decimal("122.80"), 2)
    assert [(a["SourceId"], a["SourceType"], a["Type"], Decimal(a["Amount"])) for a in fake.adjustments] == [
        ("item-1-1", "InvoiceDetail", "Credit", Decimal("100")),
        ("item-1-0", "InvoiceDetail", "Credit", Decimal("22.80")),
    ]
    assert fake.invoices["INV-1"]["balance"] == 0
    assert fake.adjustments[0]["AdjustmentDate"] == "2026-03-10" and fake.adjustments[0]["InvoiceId"] == "inv-1"
    assert posts(fake)[0][1] == "writeoff:inv-1:item-1-1:2026-03-10"


def test_tax_items_are_adjusted_when_items_are_not_enough(fake):
    fake.add_invoice("INV-1", lines=[("10", "19")])

    client(fake).write_off_invoice(invoice_key="INV-1", business_date=DAY, reason_code="R", comment="c")

    assert [(a["SourceType"], Decimal(a["Amount"])) for a in fake.adjustments] == [("Tax", Decimal("19")), ("InvoiceDetail", Decimal("10"))]


def test_account_credit_balance_is_applied_first(fake):
    fake.add_invoice("INV-1", lines=[("100", "19")], credit_balance="30")

    result = client(fake).write_off_invoice(invoice_key="INV-1", business_date=DAY, reason_code="R", comment="c")

    assert [a["kind"] for a in fake.adjustments] == ["credit-balance", "item"]
    assert Decimal(fake.adjustments[1]["Amount"]) == 89
    assert result.written_off == Decimal("119")


def test_negative_balance_is_charged_on_negative_lines_only(fake):
    fake.add_invoice("INV-1", lines=[("100", "19"), ("-40", "0")], balance="-25")

    client(fake).write_off_invoice(invoice_key="INV-1", business_date=DAY, reason_code="R", comment="c")

    assert [(a["SourceId"], a["Type"], Decimal(a["Amount"])) for a in fake.adjustments] == [("item-1-1", "Charge", Decimal("25"))]
    assert fake.invoices["INV-1"]["balance"] == 0


def test_positive_balance_is_credited_on_positive_lines_only(fake):
    # the invoice: balance 47.50, item A +40.00 (tax 8.00), item B -12.00
    fake.add_invoice("INV-1", lines=[("40.00", "8.00"), ("-12.00", "0")], balance="47.50")

    result = client(fake).write_off_invoice(invoice_key="INV-1", business_date=DAY, reason_code="R", comment="c")

    assert [(a["SourceId"], a["Type"], Decimal(a["Amount"])) for a in fake.adjustments] == [
        ("item-1-0", "Credit", Decimal("40.00")),
        ("tax-1-0", "Credit", Decimal("7.50")),
    ]
    assert (result.status, result.written_off, fake.invoices["INV-1"]["balance"]) == ("succeeded", Decimal("47.50"), 0)


def test_balance_the_rule_cannot_zero_fails_before_anything_is_posted(fake):
    # a negative balance with positive lines only; the account's credit balance is not touched either
    fake.add_invoice("INV-1", lines=[("100", "19")], balance="-25", credit_balance="30")
    fake.add_invoice("INV-2", lines=[("10", "0"), ("-50", "0")], balance="30", credit_balance="5")

    for key in ("INV-1", "INV-2"):
        with pytest.raises(WriteOffFailed, match="cannot bring the balance"):
            client(fake).write_off_invoice(invoice_key=key, business_date=DAY, reason_code="R", comment="c")

    assert posts(fake) == [] and fake.adjustments == []


def test_zero_balance_is_skipped_without_posting(fake):
    fake.add_invoice("INV-1", lines=[("100", "19")], balance="0")

    assert client(fake).write_off_invoice(invoice_key="INV-1", business_date=DAY, reason_code="R", comment="c").status == "skipped"
    assert posts(fake) == []


def test_429_is_retried_and_the_token_is_fetched_once(fake):
    fake.add_invoice("INV-1", lines=[("100", "19")])
    fake.add_invoice("INV-2", lines=[("100", "19")])
    fake.fail_once("GET", "/v1/invoices/INV-1", "429")

    c = client(fake)
    c.write_off_invoice(invoice_key="INV-1", business_date=DAY, reason_code="R", comment="c")
    client(fake).write_off_invoice(invoice_key="INV-2", business_date=DAY, reason_code="R", comment="c")

    assert fake.invoices["INV-1"]["balance"] == 0 and fake.invoices["INV-2"]["balance"] == 0
    assert fake.token_requests == 1
    assert [p for m, p, k in fake.calls].count("/v1/invoices/INV-1") == 2


def test_500_after_applying_is_retried_with_the_same_key_and_applied_once(fake):
    fake.add_invoice("INV-1", lines=[("100", "19")])
    fake.fail_once("POST", "/v1/object/invoice-item-adjustment", "500-after")

    client(fake).write_off_invoice(invoice_key="INV-1", business_date=DAY, reason_code="R", comment="c")

    keys = [k for p, k in posts(fake)]
    assert keys[0] == keys[1]  # the retry carried the same Idempotency-Key
    assert len(fake.adjustments) == 2  # item and tax, each applied once
    assert fake.invoices["INV-1"]["balance"] == 0


def test_a_second_run_of_the_same_day_applies_nothing_again(fake):
    fake.add_invoice("INV-1", lines=[("100", "19")])
    client(fake).write_off_invoice(invoice_key="INV-1", business_date=DAY, reason_code="R", comment="c")
    # as if every read were stale: the same plan is posted again under the same keys
    fake.invoices["INV-1"]["balance"] = Decimal("119")
    fake.invoices["INV-1"]["items"][0]["available"] = Decimal("100")
    fake.invoices["INV-1"]["items"][0]["taxes"][0]["available"] = Decimal("19")

    client(fake).write_off_invoice(invoice_key="INV-1", business_date=DAY, reason_code="R", comment="c")

    assert len(fake.adjustments) == 2


def test_timeout_fails_the_invoice_and_a_retry_with_the_same_key_applies_once(fake):
    fake.add_invoice("INV-1", lines=[("100", "19")])
    fake.fail_once("POST", "/v1/object/invoice-item-adjustment", "timeout")

    with pytest.raises(ZuoraError, match="timed out"):
        client(fake, timeouts=(1.0, 0.3)).write_off_invoice(invoice_key="INV-1", business_date=DAY, reason_code="R", comment="c")
    import time

    time.sleep(0.8)  # the fake finishes applying the timed-out request
    client(fake).write_off_invoice(invoice_key="INV-1", business_date=DAY, reason_code="R", comment="c")

    assert fake.invoices["INV-1"]["balance"] == 0
    assert len(fake.adjustments) == 2


def test_client_errors_are_not_retried(fake):
    fake.add_invoice("INV-1", lines=[("100", "19")])

    with pytest.raises(ZuoraError, match="HTTP 404"):
        client(fake).write_off_invoice(invoice_key="NOPE", business_date=DAY, reason_code="R", comment="c")
    assert [p for m, p, k in fake.calls].count("/v1/invoices/NOPE") == 1


@pytest.mark.django_db
def test_zuora_tenant_run_writes_off_remotely_and_reports_failures(fake, tenant_a, django_capture_on_commit_callbacks):
    tenant = tenant_a.tenant
    services.writeoff_settings_save(
        tenant=tenant, actor=ACTOR, provider="zuora", zuora_base_url=fake.base_url, zuora_client_id="ledgerflow", zuora_client_secret="s3cret"
    )
    sub = cancelled_subscription(tenant, at=datetime(2026, 3, 8, tzinfo=ZoneInfo("UTC")))
    good, missing = unbalanced_invoice(sub), unbalanced_invoice(sub)
    fake.add_invoice(good.number, lines=[("100", "19")])

    with django_capture_on_commit_callbacks(execute=False):
        run = start_run(tenant, DAY)
        step(run, "findCandidates")
        ids = list(WriteOffCandidate.objects.filter(run=run).values_list("pk", flat=True))
        services.writeoff_apply_chunk(run_pk=run.pk, candidate_ids=ids, actor=ACTOR)

    outcome = dict(WriteOffCandidate.objects.filter(run=run).values_list("invoice_id", "status"))
    assert outcome == {good.pk: "succeeded", missing.pk: "failed"}
    assert "HTTP 404" in WriteOffCandidate.objects.get(invoice=missing).error
    assert fake.invoices[good.number]["balance"] == 0


@pytest.mark.django_db
def test_run_reports_an_invoice_the_rule_cannot_zero_as_failed_not_written_off(fake, tenant_a, django_capture_on_commit_callbacks):
    tenant = tenant_a.tenant
    services.writeoff_settings_save(
        tenant=tenant, actor=ACTOR, provider="zuora", zuora_base_url=fake.base_url, zuora_client_id="ledgerflow", zuora_client_secret="s3cret"
    )
    sub = cancelled_subscription(tenant, at=datetime(2026, 3, 8, tzinfo=ZoneInfo("UTC")))
    good, bad = unbalanced_invoice(sub), unbalanced_invoice(sub)
    fake.add_invoice(good.number, lines=[("40.00", "8.00"), ("-12.00", "0")], balance="47.50")
    fake.add_invoice(bad.number, lines=[("10.00", "0"), ("-12.00", "0")], balance="-2.00", credit_balance="0")
    fake.invoices[bad.number]["items"][1]["available"] = Decimal("-1.00")  # only 1.00 left to charge back

    with django_capture_on_commit_callbacks(execute=False):
        run = start_run(tenant, DAY)
        step(run, "findCandidates")
        ids = list(WriteOffCandidate.objects.filter(run=run).values_list("pk", flat=True))
        services.writeoff_apply_chunk(run_pk=run.pk, candidate_ids=ids, actor=ACTOR)

    outcome = {c.invoice_id: (c.status, c.written_off_amount) for c in WriteOffCandidate.objects.filter(run=run)}
    assert outcome == {good.pk: ("succeeded", Decimal("47.50")), bad.pk: ("failed", Decimal("0"))}
    assert "negative balance takes charges on negative lines only" in WriteOffCandidate.objects.get(invoice=bad).error
    assert [a["SourceId"] for a in fake.adjustments] == [fake.invoices[good.number]["items"][0]["id"], fake.invoices[good.number]["items"][0]["taxes"][0]["id"]]
    assert fake.invoices[bad.number]["balance"] == Decimal("-2.00")
