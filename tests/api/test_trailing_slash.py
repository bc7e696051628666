"""API paths have no trailing slash; one added (or one missing from schema/ and docs/) answers a
problem that names the right path, never an HTML page, and writes nothing."""

import pytest

from billing.models import Customer


@pytest.mark.parametrize(
    ("method", "path", "location"),
    [
        ("get", "/api/v1/customers/", "/api/v1/customers"),
        ("post", "/api/v1/customers/", "/api/v1/customers"),
        ("get", "/api/v1/customers/1/", "/api/v1/customers/1"),
        ("post", "/api/v1/invoices/7/issue/", "/api/v1/invoices/7/issue"),
        ("get", "/api/v1/journeys/abc/result/", "/api/v1/journeys/abc/result"),
    ],
)
def test_a_trailing_slash_answers_a_problem_saying_to_drop_it(api, method, path, location):
    response = getattr(api, method)(path, {"name": "Acme", "currency": "EUR"}, format="json")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "trailing-slash"
    assert body["location"] == location
    assert location in body["detail"]
    assert not Customer.objects.exists()


def test_the_schema_without_its_slash_says_to_add_it(api):
    body = api.get("/api/v1/schema").json()

    assert (body["code"], body["location"]) == ("missing-trailing-slash", "/api/v1/schema/")


@pytest.mark.parametrize("path", ["/api/v1/nothing-here", "/api/v1/nothing-here/", "/api/v1/"])
def test_a_path_that_does_not_exist_either_way_is_plainly_not_found(api, path):
    response = api.get(path)

    assert response.status_code == 404
    assert response.json()["code"] == "not-found"
