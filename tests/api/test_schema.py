"""The OpenAPI schema is valid, free of generator warnings, served with its docs, documents every
problem each operation can answer, and names its paths the way clients (and the Journeys contract) do."""

import io
import re

import pytest
import yaml
from django.core.management import call_command

from tests.journeys.contract import GENERIC, MONTHLY

PROBLEM_REF = "#/components/schemas/Problem"
METHODS = ("get", "post", "put", "patch", "delete")
CAMEL = re.compile(r"^[a-z][a-zA-Z0-9]*$")


@pytest.fixture(scope="module")
def openapi():
    out = io.StringIO()
    call_command("spectacular", stdout=out)
    return yaml.safe_load(out.getvalue())


def operations(openapi):
    for path, item in openapi["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def test_openapi_schema_validates_without_warnings():
    out = io.StringIO()

    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)

    assert "/api/v1/invoices/{id}/issue" in out.getvalue()


def test_schema_and_swagger_ui_are_served(client, db):
    assert client.get("/api/v1/schema/").status_code == 200
    docs = client.get("/api/v1/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content


def test_problem_component_is_rfc9457_with_field_errors(openapi):
    problem = openapi["components"]["schemas"]["Problem"]

    assert set(problem["required"]) == {"type", "title", "status", "detail", "code"}
    assert problem["properties"]["errors"]["items"]["required"] == ["field", "message", "code"]


def test_every_operation_documents_the_problems_it_can_answer(openapi):
    missing = {}
    for path, method, operation in operations(openapi):
        expected = {"400", "429"}
        if operation.get("security"):
            expected |= {"401", "403"}
        if "{" in path:
            expected.add("404")
        if method != "get":
            expected |= {"409", "422"}
        if "requestBody" in operation:
            expected |= {"413", "415"}
        responses = operation["responses"]
        wrong = sorted(
            code
            for code in expected
            if responses.get(code, {}).get("content", {}).get("application/problem+json", {}).get("schema")
            != {"$ref": PROBLEM_REF}
        )
        if wrong:
            missing[f"{method.upper()} {path}"] = wrong

    assert not missing, missing


def test_paginated_lists_document_404_for_a_page_past_the_end(openapi):
    assert "404" in openapi["paths"]["/api/v1/customers"]["get"]["responses"]


def test_a_view_declares_the_extra_problems_it_can_answer(openapi):
    # A journey still running has no result yet: 409, as the Journeys contract says.
    assert "409" in openapi["paths"]["/api/v1/journeys/{journeyId}/result"]["get"]["responses"]


def test_idempotent_creates_document_the_idempotency_key_header(openapi):
    for path in ("/api/v1/payments", "/api/v1/charges", "/api/v1/subscriptions", "/api/v1/invoices"):
        headers = [
            p["name"] for p in openapi["paths"][path]["post"].get("parameters", []) if p["in"] == "header"
        ]
        assert headers == ["Idempotency-Key"], path


def test_every_parameter_is_camel_case(openapi):
    names = {
        (f"{method.upper()} {path}", parameter["in"], parameter["name"])
        for path, method, operation in operations(openapi)
        for parameter in operation.get("parameters", [])
        if parameter["in"] in ("path", "query")
    }
    template_names = {name for path in openapi["paths"] for name in re.findall(r"{([^}]+)}", path)}

    assert names  # the schema has parameters at all
    assert [n for n in names if not CAMEL.match(n[2])] == []
    assert [n for n in template_names if not CAMEL.match(n)] == []


def test_journeys_paths_and_path_parameters_match_the_published_contract(openapi):
    ours = {path.removeprefix("/api/v1"): item for path, item in openapi["paths"].items()}
    for contract in (GENERIC, MONTHLY):
        document = yaml.safe_load(contract.read_text())
        for path, item in document["paths"].items():
            if path == "/journeys/{journeyName}/start":
                # Served per journey: the monthly batch's own contract names its literal path.
                assert "/journeys/monthly-invoicing-batch/start" in ours
                continue
            # The monthly contract's steps/approveInvoiceBatch is the generic steps/{stepId}.
            served = path.replace("/steps/approveInvoiceBatch", "/steps/{stepId}")
            assert served in ours, path
            for method in set(item) & set(METHODS):
                assert method in ours[served], f"{method} {path}"
                theirs = {p["name"] for p in item[method].get("parameters", []) if p["in"] == "path"}
                mine = {p["name"] for p in ours[served][method].get("parameters", []) if p["in"] == "path"}
                assert theirs <= mine, (path, theirs, mine)
