"""Validate responses against the published JourneyForge contract (shared/contracts/journeyforge)."""

from functools import cache
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

# A copy of shared/contracts/journeyforge (Apache-2.0, see its LICENSE), so the suite runs anywhere.
CONTRACTS = Path(__file__).resolve().parent / "contracts" / "journeyforge"
GENERIC = CONTRACTS / "openapi" / "journeys.openapi.yaml"
MONTHLY = CONTRACTS / "examples" / "business" / "monthly-invoicing-batch" / "monthly-invoicing-batch.openapi.yaml"


@cache
def _registry() -> Registry:
    resources = []
    for path in (GENERIC, MONTHLY):
        document = yaml.safe_load(path.read_text())
        resources.append((path.as_uri(), Resource.opaque(document)))
    return Registry().with_resources(resources)


def _validator(path: Path, pointer: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"{path.as_uri()}#{pointer}"}, registry=_registry())


def assert_valid(body: dict, path: Path, pointer: str) -> None:
    errors = sorted(_validator(path, pointer).iter_errors(body), key=str)
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


def assert_status(body):
    """The generic JourneyStatus (phase RUNNING | SUCCEEDED | FAILED, as the contract's README says)."""
    assert_valid(body, GENERIC, "/components/schemas/JourneyStatus")
    assert body["phase"] in ("RUNNING", "SUCCEEDED", "FAILED")


def assert_outcome(body):
    assert_valid(body, GENERIC, "/components/schemas/JourneyOutcome")


def assert_config_outcome(body):
    assert_valid(body, MONTHLY, "/components/schemas/JourneyOutcome")


def assert_list(body):
    assert_valid(body, GENERIC, "/paths/~1journeys/get/responses/200/content/application~1json/schema")


def assert_approval_response(body):
    assert_status(body)
    assert body["decision"] in ("APPROVED", "REJECTED")
    assert isinstance(body.get("comment", ""), str)
