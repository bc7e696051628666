"""What the API returns, it accepts: every name a request schema documents is read back as the
serializer's field (camelCase both ways, `addressLine1` too), and what a GET returns, sent back to
the POST/PUT/PATCH of the same resource, is accepted.

Operations come from the OpenAPI schema, so a new endpoint is checked without being listed here."""

from __future__ import annotations

import io
import re

import pytest
import yaml
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from tests.api.world import listed_ids, seed_world

WRITE_METHODS = ("post", "put", "patch")
# Values that must differ from the record read back for a create to be a new record, not a duplicate.
FRESH = {
    "externalRef": "ROUND-TRIP-NEW",
    "iban": "GB82WEST12345698765432",
    "railTransactionId": "RT-NEW",
    "slug": "rail-round-trip",
}
# Creates whose GET cannot return what the POST needs, and why.
NOT_RETURNED = {"POST /api/v1/bank-statements": "the statement file is uploaded, never returned"}


@pytest.fixture(scope="module")
def openapi():
    out = io.StringIO()
    call_command("spectacular", stdout=out)
    return yaml.safe_load(out.getvalue())


@pytest.fixture
def world(tenant_a):
    return seed_world(tenant_a.tenant)


def resolve(openapi, schema):
    while "$ref" in schema:
        schema = openapi["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    for combinator in ("allOf", "oneOf", "anyOf"):
        if combinator in schema:  # drf-spectacular wraps enums and nullable refs this way
            merged = {}
            for part in schema[combinator]:
                merged.update(resolve(openapi, part))
            return merged
    return schema


def request_body(openapi, operation):
    """(media type, resolved schema) of the operation's request body, JSON preferred."""
    content = operation.get("requestBody", {}).get("content", {})
    for media_type in ("application/json", "multipart/form-data"):
        if media_type in content:
            return media_type, resolve(openapi, content[media_type]["schema"])
    return None, None


def placeholder(openapi, schema):
    """A value of the schema's type for every property it documents (nested ones included)."""
    schema = resolve(openapi, schema)
    if "enum" in schema:
        return next(v for v in schema["enum"] if v is not None)
    kind = schema.get("type", "string")
    kind = next(k for k in kind if k != "null") if isinstance(kind, list) else kind
    if kind == "object":
        return {name: placeholder(openapi, sub) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        return [placeholder(openapi, schema.get("items", {}))]
    if kind == "integer":
        return 1
    if kind == "boolean":
        return True
    if kind == "number":
        return "1"
    return {"date": "2026-01-01", "date-time": "2026-01-01T00:00:00Z", "email": "a@b.example"}.get(
        schema.get("format"), "x"
    )


def writable(openapi, schema, value):
    """`value` (a GET body) cut down to what `schema` (a request body) documents, recursively."""
    schema = resolve(openapi, schema)
    if isinstance(value, dict) and "properties" in schema:
        return {
            k: writable(openapi, schema["properties"][k], v)
            for k, v in value.items()
            if k in schema["properties"]
        }
    if isinstance(value, list) and "items" in schema:
        return [writable(openapi, schema["items"], item) for item in value]
    return value


def fill_path(path: str, client, world) -> str:
    """The path with each parameter naming a real record of the caller's tenant."""
    collection = path.removeprefix("/api/v1/").split("/")[0]

    def value(match):
        name = match[1]
        if name == "customerId":
            return str(world.customer.pk)
        if name == "stepId":
            return "approveInvoiceBatch"
        if name == "role":
            return "viewer"
        ids = world.ids.get(collection) or listed_ids(client, collection)
        assert ids, f"no {collection} seeded for {path}"
        return str(ids[0])

    return re.sub(r"{([^}]+)}", value, path)


def send(client, method, path, media_type, body):
    if media_type == "multipart/form-data":
        body = {
            k: SimpleUploadedFile("statement.xml", b"<x/>") if k == "file" else v for k, v in body.items()
        }
        return getattr(client, method)(path, body, format="multipart")
    return getattr(client, method)(path, body, format="json")


def unknown_field_errors(response) -> list[str]:
    if response.get("Content-Type", "").split(";")[0] != "application/problem+json":
        return []
    errors = response.json().get("errors") or []
    return [
        e["field"]
        for e in errors
        if e.get("code") == "unknown_field" or "unknown field" in e["message"].lower()
    ]


def write_operations(openapi):
    for path, item in openapi["paths"].items():
        for method in WRITE_METHODS:
            if method in item and "requestBody" in item[method]:
                yield path, method, item[method]


def test_every_documented_request_property_is_accepted_by_name(openapi, tenant_a, world):
    refused, not_reached, checked = {}, [], []
    for path, method, operation in write_operations(openapi):
        media_type, schema = request_body(openapi, operation)
        body = placeholder(openapi, schema)
        url = fill_path(path, tenant_a.client, world)

        response = send(tenant_a.client, method, url, media_type, body)

        label = f"{method.upper()} {path}"
        checked.append(label)
        if response.status_code == 404:
            not_reached.append(label)  # the path's record was not found: the body was never read
        elif unknown := unknown_field_errors(response):
            refused[label] = unknown

    assert "PUT /api/v1/customers/{id}" in checked and len(checked) > 15
    assert not not_reached, not_reached
    assert not refused, refused


def round_trips(openapi):
    """(write operation, the GET whose body it must accept): POST P ↔ GET P/{id}; PUT/PATCH P ↔ GET P."""
    paths = openapi["paths"]
    for path, method, operation in write_operations(openapi):
        if method == "post":
            detail = next((p for p in paths if re.fullmatch(re.escape(path) + r"/{[^}/]+}", p)), None)
            if detail and "get" in paths[detail]:
                yield path, method, operation, detail
        elif "get" in paths[path]:
            yield path, method, operation, path


def test_what_a_get_returns_a_write_of_the_same_resource_accepts(openapi, tenant_a, world):
    client = tenant_a.client
    refused, checked = {}, []
    for path, method, operation, get_path in round_trips(openapi):
        label = f"{method.upper()} {path}"
        media_type, schema = request_body(openapi, operation)
        shown = client.get(fill_path(get_path, client, world))
        assert shown.status_code == 200, (get_path, shown.content[:300])
        body = writable(openapi, schema, shown.json())
        # A secret is write-only: the client sends it and never reads it back, so it adds it itself.
        secrets = {k for k, p in schema.get("properties", {}).items() if resolve(openapi, p).get("writeOnly")}
        body.update({k: "round-trip-secret" for k in secrets if k in schema.get("required", [])})
        missing = sorted(set(schema.get("required", [])) - set(body))
        if label in NOT_RETURNED:
            continue
        assert not missing, f"{label}: GET {get_path} does not return required {missing}"
        if method == "post":
            body = {k: FRESH.get(k, v) for k, v in body.items()}

        response = send(client, method, fill_path(path, client, world), media_type, body)

        checked.append(label)
        if not 200 <= response.status_code < 300:
            refused[label] = (response.status_code, response.content[:400])

    assert {"POST /api/v1/customers", "PUT /api/v1/customers/{id}", "PATCH /api/v1/customers/{id}"} <= set(
        checked
    )
    assert not refused, refused


def test_a_customer_read_back_with_its_address_is_accepted(tenant_a, world):
    shown = tenant_a.client.get(f"/api/v1/customers/{world.customer.pk}").json()
    assert shown["addressLine1"] == "Hauptstraße 1"

    response = tenant_a.client.put(
        f"/api/v1/customers/{world.customer.pk}",
        {**shown, "addressLine1": "Flughafenstraße 2", "addressLine2": "Tor 3"},
        format="json",
    )

    assert response.status_code == 200, response.content
    world.customer.refresh_from_db()
    assert (world.customer.address_line1, world.customer.address_line2) == ("Flughafenstraße 2", "Tor 3")
