"""The reconciliation API: upload, queues, filters, manual match and unmatch, tenant isolation."""

from decimal import Decimal
from pathlib import Path

from django.core.files.uploadedfile import SimpleUploadedFile

from reconciliation.models import BankEntry, Reconciliation
from tests.factories import BankAccountFactory
from tests.reconciliation.camt import camt053

SAMPLES = Path(__file__).parent / "samples"


def _upload(api, account, data: bytes, name="statement.xml"):
    return api.post(
        "/api/v1/bank-statements",
        {"bankAccount": account.pk, "file": SimpleUploadedFile(name, data)},
        format="multipart",
    )


def test_upload_imports_and_lists_unmatched_entries(api, books):
    response = _upload(api, books.account, (SAMPLES / "camt053_sample.xml").read_bytes())

    assert response.status_code == 201, response.content
    assert response.json()["newEntryCount"] == 3
    queue = api.get("/api/v1/bank-entries", {"matchStatus": "unmatched", "amountMin": "100"}).json()
    assert sorted(e["amount"] for e in queue["results"]) == ["129.0000", "250.0000"]


def test_malformed_upload_answers_400_naming_the_element_and_imports_nothing(api, books):
    response = _upload(api, books.account, camt053([{"amount": "x", "txid": "A"}]))

    assert response.status_code == 400
    assert "<Ntry> #1" in response.json()["detail"]
    assert BankEntry.objects.count() == 0


def test_other_tenants_bank_account_is_refused(api, tenant_b):
    foreign = BankAccountFactory(tenant=tenant_b.tenant)

    response = _upload(api, foreign, camt053([{"amount": "1.00", "txid": "A"}]))

    assert response.status_code == 400
    assert BankEntry.objects.count() == 0


def test_match_by_hand_and_discrepancy_queue(api, books):
    invoice = books.invoice("40.00")
    books.import_camt([{"amount": "40.00", "text": invoice.number, "txid": "M1"}])
    books.run()
    discrepancies = api.get("/api/v1/discrepancies", {"discrepancyKind": "missing_payment"}).json()
    assert discrepancies["count"] == 1
    entry = BankEntry.objects.get()

    response = api.post(
        f"/api/v1/bank-entries/{entry.pk}/match",
        {"invoices": [{"invoice": invoice.pk, "amount": "40.00"}], "reason": "plain transfer"},
        format="json",
    )

    assert response.status_code == 201, response.content
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    assert api.get("/api/v1/discrepancies").json()["count"] == 0


def test_unmatch_needs_a_reason_and_dismisses_a_discrepancy(api, books):
    invoice = books.invoice("40.00")
    books.import_camt([{"amount": "40.00", "text": invoice.number, "txid": "M1"}])
    books.run()
    recon = Reconciliation.objects.get()

    assert api.post(f"/api/v1/reconciliations/{recon.pk}/unmatch", {}, format="json").status_code == 400
    response = api.post(f"/api/v1/reconciliations/{recon.pk}/unmatch", {"reason": "refund"}, format="json")

    assert response.status_code == 200
    assert response.json()["status"] == "reversed"


def test_reconciliations_filter_by_status(api, books):
    invoice = books.invoice("10.00")
    books.payment("10.00", invoice=invoice, rail="pi_x")
    books.import_camt([{"amount": "10.00", "ref": "pi_x", "txid": "X"}])
    books.run()

    listed = api.get("/api/v1/reconciliations", {"status": "reconciled"}).json()

    assert listed["count"] == 1
    assert listed["results"][0]["amount"] == "10.0000"
    assert Decimal(listed["results"][0]["amount"]) == Decimal("10")


def test_bank_accounts_are_tenant_scoped(api, tenant_b):
    BankAccountFactory(tenant=tenant_b.tenant)

    created = api.post(
        "/api/v1/bank-accounts",
        {"name": "Ops", "iban": "DE02120300000000202051", "currency": "EUR"},
        format="json",
    )

    assert created.status_code == 201
    assert api.get("/api/v1/bank-accounts").json()["count"] == 1


def test_admin_unmatched_side_by_side_and_match(admin_client, books):
    invoice = books.invoice("40.00")
    books.import_camt([{"amount": "40.00", "text": invoice.number, "txid": "M1"}])
    entry = BankEntry.objects.get()

    queue = admin_client.get("/admin/reconciliation/unmatchedbankentry/")
    page = admin_client.get(f"/admin/reconciliation/bankentry/{entry.pk}/change/")
    response = admin_client.post(
        f"/admin/reconciliation/bankentry/{entry.pk}/match/",
        {"invoice": invoice.pk, "amount": "40.00", "reason": "checked by phone"},
    )

    assert queue.status_code == 200 and b"40.0000" in queue.content
    assert page.status_code == 200 and invoice.number.encode() in page.content
    assert response.status_code == 302
    invoice.refresh_from_db()
    assert invoice.status == "paid"


def test_admin_statement_upload_imports(admin_client, books):
    response = admin_client.post(
        "/admin/reconciliation/bankstatement/add/",
        {
            "bank_account": books.account.pk,
            "file": SimpleUploadedFile("s.xml", camt053([{"amount": "5.00", "txid": "U"}])),
        },
    )

    assert response.status_code == 302, response.content[:2000]
    assert BankEntry.objects.count() == 1
