"""The OpenAPI schema documents every problem an operation can answer, in one place.

Which problems an operation can give follows from what it is (authenticated, has a body, names a
record in its path, writes, lists pages), so a new view is documented without a decorator. A view
that can answer more says so with `problem_statuses` (a tuple, or a dict by viewset action).
"""

from __future__ import annotations

from djangorestframework_camel_case.util import camelize_re, underscore_to_camel
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import OpenApiParameter
from rest_framework.permissions import AllowAny

from core.api.problems import PROBLEM_CONTENT_TYPE
from core.api.views import IDEMPOTENCY_HEADER, IdempotentCreateMixin

PROBLEM_COMPONENT = "Problem"

PROBLEM_SCHEMA = {
    "type": "object",
    "description": "RFC 9457 problem details. Some problems add members of their own (e.g. `currentStatus`).",
    "properties": {
        "type": {"type": "string", "description": "A URI reference naming the kind of problem."},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "What went wrong, for a person."},
        "code": {"type": "string", "description": "Stable, machine-readable code of the problem."},
        "errors": {
            "type": "array",
            "description": "Each bad field, named as the client sent it (camelCase, `items[0].unitAmount`).",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": "string"},
                    "message": {"type": "string"},
                    "code": {"type": "string"},
                },
                "required": ["field", "message", "code"],
            },
        },
    },
    "required": ["type", "title", "status", "detail", "code"],
    "additionalProperties": True,
}

PROBLEM_DESCRIPTIONS = {
    400: "Invalid input: the body, a query parameter or a header; `errors` names each bad field.",
    401: "No or invalid credentials.",
    403: "Not allowed: not a member of the tenant, or the role lacks the permission.",
    404: "No such record for the caller's tenant (or no such page).",
    409: "Conflicts with the current state of the data (a status that does not allow it, a duplicate).",
    413: "The request body is larger than allowed.",
    415: "The body's media type is not accepted.",
    422: "Understood but refused by a business rule (e.g. an Idempotency-Key reused with another body).",
    429: "Too many requests; `Retry-After` says when to try again.",
}

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


class ProblemAutoSchema(AutoSchema):
    def problem_statuses(self) -> set[int]:
        statuses = {400, 429}
        if self._requires_authentication():
            statuses |= {401, 403}
        if "{" in self.path or self._is_paginated_list():
            statuses.add(404)
        if self.method in WRITE_METHODS:
            statuses |= {409, 422}
        if self.method in ("POST", "PUT", "PATCH"):
            statuses |= {413, 415}
        declared = getattr(self.view, "problem_statuses", ())
        if isinstance(declared, dict):
            declared = declared.get(getattr(self.view, "action", None), ())
        return statuses | set(declared)

    def _requires_authentication(self) -> bool:
        permissions = self.view.get_permissions()
        return bool(permissions) and not all(isinstance(p, AllowAny) for p in permissions)

    def _is_paginated_list(self) -> bool:
        return self.method == "GET" and self._is_list_view() and self._get_paginator() is not None

    def _is_idempotent_create(self) -> bool:
        return isinstance(self.view, IdempotentCreateMixin) and getattr(self.view, "action", None) == "create"

    def get_override_parameters(self):
        parameters = list(super().get_override_parameters())
        if self._is_idempotent_create():
            parameters.append(
                OpenApiParameter(
                    IDEMPOTENCY_HEADER,
                    str,
                    OpenApiParameter.HEADER,
                    description="A retry with the same key and body gets the first response again and "
                    "creates nothing; the same key with another body answers 422.",
                )
            )
        return parameters

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        ref = self._problem_ref()
        for status in sorted(self.problem_statuses()):
            responses.setdefault(
                str(status),
                {
                    "description": PROBLEM_DESCRIPTIONS.get(status, "Problem"),
                    "content": {PROBLEM_CONTENT_TYPE: {"schema": ref}},
                },
            )
        return responses

    def _problem_ref(self) -> dict:
        component = ResolvedComponent(
            name=PROBLEM_COMPONENT,
            type=ResolvedComponent.SCHEMA,
            object=PROBLEM_COMPONENT,
            schema=PROBLEM_SCHEMA,
        )
        self.registry.register_on_missing(component)
        return component.ref


def _camel(name: str) -> str:
    return camelize_re.sub(underscore_to_camel, name)


def camelize_path_parameters(result, generator, request, public):
    """Path parameters in camelCase like every other name clients see (`{journeyId}`, the Journeys
    contract's spelling); the URL conf's keyword names stay Python's."""
    paths = {}
    for path, operations in result.get("paths", {}).items():
        for operation in operations.values():
            for parameter in operation.get("parameters", []) if isinstance(operation, dict) else []:
                if parameter.get("in") == "path":
                    path = path.replace("{" + parameter["name"] + "}", "{" + _camel(parameter["name"]) + "}")
                    parameter["name"] = _camel(parameter["name"])
        paths[path] = operations
    result["paths"] = paths
    return result
