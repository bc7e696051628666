"""The reconciliation API: upload, queues, filters, manual match and unmatch, tenant isolation."""

import io
import zipfile
from decimal import Decimal
from pathlib import Path

from django.core.files.uploadedfile import SimpleUploadedFile

from reconciliation.models import BankEntry, BankStatement, Reconciliation
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
    payment = books.payment("40.00", invoice=invoice)

    response = api.post(
        f"/api/v1/bank-entries/{entry.pk}/match",
        {
            "invoices": [{"invoice": invoice.pk, "amount": "40.00"}],
            "payment": payment.pk,
            "reason": "plain transfer",
        },
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
    payment = books.payment("40.00", invoice=invoice)

    queue = admin_client.get("/admin/reconciliation/unmatchedbankentry/")
    page = admin_client.get(f"/admin/reconciliation/bankentry/{entry.pk}/change/")
    response = admin_client.post(
        f"/admin/reconciliation/bankentry/{entry.pk}/match/",
        {"invoice": invoice.pk, "payment": payment.pk, "amount": "40.00", "reason": "checked by phone"},
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


def test_match_by_hand_without_payment_is_400_naming_payment_and_changes_nothing(api, books):
    invoice = books.invoice("40.00")
    books.import_camt([{"amount": "40.00", "text": invoice.number, "txid": "M1"}])
    entry = BankEntry.objects.get()

    response = api.post(
        f"/api/v1/bank-entries/{entry.pk}/match",
        {"invoices": [{"invoice": invoice.pk, "amount": "40.00"}], "reason": "plain transfer"},
        format="json",
    )

    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["payment"]
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid) == ("payment_due", 0)
    assert Reconciliation.objects.count() == 0


def test_match_by_hand_with_an_amount_finer_than_the_currency_is_400_and_changes_nothing(api, books):
    invoice = books.invoice("10.00")
    books.import_camt([{"amount": "10.01", "text": invoice.number, "txid": "M1"}])
    entry = BankEntry.objects.get()
    payment = books.payment("10.01", invoice=invoice)

    response = api.post(
        f"/api/v1/bank-entries/{entry.pk}/match",
        {
            "invoices": [{"invoice": invoice.pk, "amount": "0.0050"}],
            "payment": payment.pk,
            "reason": "plain transfer",
        },
        format="json",
    )

    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["invoices[0].amount"]
    invoice.refresh_from_db()
    assert (invoice.balance, invoice.amount_paid) == (Decimal("10.00"), 0)


def test_match_by_hand_of_a_payment_already_backing_another_entry_is_409(api, books):
    first, second = books.invoice("50.00"), books.invoice("50.00")
    books.import_camt(
        [
            {"amount": "50.00", "text": first.number, "txid": "M1"},
            {"amount": "50.00", "text": second.number, "txid": "M2"},
        ]
    )
    one, two = BankEntry.objects.order_by("id")
    payment = books.payment("50.00")
    body = {"payment": payment.pk, "reason": "by phone"}

    ok = api.post(
        f"/api/v1/bank-entries/{one.pk}/match",
        {**body, "invoices": [{"invoice": first.pk, "amount": "50.00"}]},
        format="json",
    )
    refused = api.post(
        f"/api/v1/bank-entries/{two.pk}/match",
        {**body, "invoices": [{"invoice": second.pk, "amount": "50.00"}]},
        format="json",
    )

    assert ok.status_code == 201, ok.content
    assert (refused.status_code, refused.json()["code"]) == (409, "payment-exhausted")
    second.refresh_from_db()
    assert (second.status, second.amount_paid) == ("payment_due", 0)


def test_admin_match_without_payment_names_the_payment_and_changes_nothing(admin_client, books):
    invoice = books.invoice("40.00")
    books.import_camt([{"amount": "40.00", "text": invoice.number, "txid": "M1"}])
    entry = BankEntry.objects.get()

    response = admin_client.post(
        f"/admin/reconciliation/bankentry/{entry.pk}/match/",
        {"invoice": invoice.pk, "payment": "", "amount": "40.00", "reason": "checked by phone"},
        follow=True,
    )

    assert b"payment: pick the payment" in response.content.lower()
    invoice.refresh_from_db()
    assert invoice.status == "payment_due"
    assert Reconciliation.objects.count() == 0


def test_admin_reconciliation_settings_take_tolerances_per_currency(admin_client, books):
    from reconciliation.models import ReconciliationSettings

    response = admin_client.post(
        "/admin/reconciliation/reconciliationsettings/add/",
        {
            "tenant": books.tenant.pk,
            "rules": "payment_reference,invoice_number,multi_invoice,customer_open_sum",
            "amount_tolerances": '{"EUR": "0.05", "JPY": 5}',
            "bank_entry_grace_days": 5,
        },
    )
    refused = admin_client.post(
        "/admin/reconciliation/reconciliationsettings/add/",
        {
            "tenant": books.tenant.pk,
            "rules": "payment_reference",
            "amount_tolerances": '{"JPY": "0.5"}',
            "bank_entry_grace_days": 5,
        },
    )

    assert response.status_code == 302
    assert ReconciliationSettings.objects.get().amount_tolerances == {"EUR": "0.05", "JPY": "5"}
    assert refused.status_code == 200 and b"whole minor units of JPY" in refused.content


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def test_a_zip_uploaded_over_the_api_imports_every_member(api, books):
    # given an archive of two statements (and a CAMT sample in a folder)
    first = camt053(
        [{"amount": "10.00", "txid": "ZIP-A1"}, {"amount": "11.00", "txid": "ZIP-A2"}], statement_id="A"
    )
    second = camt053([{"amount": "12.00", "txid": "ZIP-B1"}], statement_id="B")
    third = (SAMPLES / "camt053_sample.xml").read_bytes()
    archive = _zip({"a.xml": first, "b.xml": second, "more/c.xml": third})

    # when it is uploaded
    response = _upload(api, books.account, archive, name="statements.zip")

    # then each member is a statement and every entry is imported
    assert response.status_code == 201, response.content
    body = response.json()
    assert BankEntry.objects.count() == 6
    assert body["entryCount"] == 6 and body["newEntryCount"] == 6
    assert [s["statementRef"] for s in body["statements"]] == ["A", "B", "20260302-DE89370400440532013000"]
    assert BankStatement.objects.filter(bank_account=books.account).count() == 3
    # and uploading it again adds nothing
    again = _upload(api, books.account, archive, name="statements.zip").json()
    assert (again["newEntryCount"], BankEntry.objects.count()) == (0, 6)


def test_a_zip_with_a_bad_member_over_the_api_is_400_naming_it_and_writes_nothing(api, books):
    good = camt053([{"amount": "10.00", "txid": "ZIP-G1"}], statement_id="G")
    bad = camt053([{"amount": "x", "txid": "ZIP-X1"}], statement_id="X")

    response = _upload(api, books.account, _zip({"good.xml": good, "zz-bad.xml": bad}), name="s.zip")

    assert response.status_code == 400, response.content
    assert response.json()["detail"].startswith("zz-bad.xml in the archive:")
    assert (BankEntry.objects.count(), BankStatement.objects.count()) == (0, 0)


def test_admin_archive_upload_says_what_every_member_imported(admin_client, books):
    archive = _zip(
        {
            "a.xml": camt053([{"amount": "5.00", "txid": "ADM-A"}], statement_id="A"),
            "b.xml": camt053(
                [{"amount": "6.00", "txid": "ADM-B"}, {"amount": "7.00", "txid": "ADM-C"}], statement_id="B"
            ),
        }
    )

    response = admin_client.post(
        "/admin/reconciliation/bankstatement/add/",
        {"bank_account": books.account.pk, "file": SimpleUploadedFile("s.zip", archive)},
        follow=True,
    )

    assert response.status_code == 200
    assert "2 statements imported from the archive: 3 entries, 3 of them new." in response.content.decode()
    assert BankEntry.objects.count() == 3
