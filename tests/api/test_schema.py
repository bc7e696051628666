"""The OpenAPI schema is valid, free of generator warnings, and served with its docs."""

import io

from django.core.management import call_command


def test_openapi_schema_validates_without_warnings():
    out = io.StringIO()

    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)

    assert "/api/v1/invoices/{id}/issue" in out.getvalue()


def test_schema_and_swagger_ui_are_served(client, db):
    assert client.get("/api/v1/schema/").status_code == 200
    docs = client.get("/api/v1/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content
