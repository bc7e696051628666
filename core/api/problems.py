"""RFC 9457 problem details for every API error, mapped in one place.

Body: {type, title, status, detail, code, errors: [{field, message, code}], ...extra}. Field names
are the client's (camelCase, with list indexes: "items[0].unitAmount").
"""

from __future__ import annotations

from typing import Any

import structlog
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import DataError, IntegrityError
from django.http import Http404
from djangorestframework_camel_case.util import camelize_re, underscore_to_camel
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.errors import ApplicationError

log = structlog.get_logger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
NON_FIELD = "non_field_errors"

_DRF_CODES = {
    exceptions.ValidationError: ("validation-error", "Invalid input"),
    exceptions.ParseError: ("malformed-request", "Malformed request body"),
    exceptions.UnsupportedMediaType: ("unsupported-media-type", "Unsupported media type"),
    exceptions.NotAuthenticated: ("not-authenticated", "Authentication required"),
    exceptions.AuthenticationFailed: ("authentication-failed", "Authentication failed"),
    exceptions.PermissionDenied: ("permission-denied", "Permission denied"),
    exceptions.NotFound: ("not-found", "Not found"),
    exceptions.MethodNotAllowed: ("method-not-allowed", "Method not allowed"),
    exceptions.NotAcceptable: ("not-acceptable", "Not acceptable"),
    exceptions.Throttled: ("throttled", "Too many requests"),
}


def camel(name: str) -> str:
    return ".".join(camelize_re.sub(underscore_to_camel, part) for part in name.split("."))


def flatten_errors(detail: Any, prefix: str = "") -> list[dict[str, str]]:
    """DRF's nested error detail as a flat list naming each bad field."""
    errors: list[dict[str, str]] = []
    if isinstance(detail, dict):
        for key, value in detail.items():
            if isinstance(key, int) or str(key).isdigit():  # a list serializer's error by index
                errors.extend(flatten_errors(value, f"{prefix}[{key}]"))
                continue
            name = "" if key == NON_FIELD else camel(str(key))
            path = f"{prefix}.{name}" if prefix and name else (prefix or name)
            errors.extend(flatten_errors(value, path))
    elif isinstance(detail, list):
        for index, value in enumerate(detail):
            if isinstance(value, dict | list):
                errors.extend(flatten_errors(value, f"{prefix}[{index}]"))
            else:
                errors.extend(flatten_errors(value, prefix))
    else:
        errors.append(
            {
                "field": prefix or "body",
                "message": str(detail),
                "code": getattr(detail, "code", None) or "invalid",
            }
        )
    return errors


def problem(
    *, status_code: int, code: str, title: str, detail: str, errors=None, extra=None, headers=None
) -> Response:
    body: dict[str, Any] = {
        "type": f"/problems/{code}",
        "title": title,
        "status": status_code,
        "detail": detail,
        "code": code,
    }
    if errors:
        body["errors"] = errors
    body.update(extra or {})
    return Response(body, status=status_code, headers=headers, content_type=PROBLEM_CONTENT_TYPE)


def too_large_problem() -> Response:
    return problem(
        status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        code="request-too-large",
        title="Request body too large",
        detail="The request body is larger than this server accepts (DATA_UPLOAD_MAX_MEMORY_SIZE).",
    )


def problem_exception_handler(exc, context):
    if isinstance(exc, ApplicationError):
        errors = [{"field": exc.field, "message": exc.detail, "code": exc.code}] if exc.field else None
        return problem(
            status_code=exc.status,
            code=exc.code,
            title=exc.title,
            detail=exc.detail,
            errors=errors,
            extra=exc.extra,
        )
    if isinstance(exc, RequestDataTooBig):
        return too_large_problem()
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, IntegrityError | DataError):
        # A database constraint caught what validation did not: the client's data conflicts.
        log.warning("api.constraint_violation", error=str(exc))
        return problem(
            status_code=status.HTTP_409_CONFLICT
            if isinstance(exc, IntegrityError)
            else status.HTTP_400_BAD_REQUEST,
            code="constraint-violation" if isinstance(exc, IntegrityError) else "invalid-value",
            title="Conflicts with existing data" if isinstance(exc, IntegrityError) else "Invalid value",
            detail="The request conflicts with the current state of the data or violates a rule.",
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    code, title = next(
        ((c, t) for cls, (c, t) in _DRF_CODES.items() if isinstance(exc, cls)),
        ("error", "Request failed"),
    )
    errors = None
    if isinstance(exc, exceptions.ValidationError):
        errors = flatten_errors(exc.detail)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    else:
        detail = str(exc.detail) if hasattr(exc, "detail") else title
    headers = {k: v for k, v in response.items() if k in ("WWW-Authenticate", "Allow", "Retry-After")}
    return problem(
        status_code=response.status_code,
        code=code,
        title=title,
        detail=detail,
        errors=errors,
        headers=headers,
    )
