"""The one ApplicationError family; the API maps each to a problem-details response once."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class ApplicationError(Exception):
    """A business rule refused the request. `code` is stable and machine-readable."""

    status = 400
    code = "application-error"
    title = "Request refused"

    def __init__(self, detail: str, *, extra: Mapping[str, Any] | None = None, field: str | None = None):
        super().__init__(detail)
        self.detail = detail
        self.extra = dict(extra or {})
        self.field = field


class ValidationFailed(ApplicationError):
    status = 400
    code = "validation-error"
    title = "Invalid input"


class NotFound(ApplicationError):
    status = 404
    code = "not-found"
    title = "Not found"


class Conflict(ApplicationError):
    status = 409
    code = "conflict"
    title = "Conflict"


class IllegalTransition(Conflict):
    code = "illegal-transition"
    title = "Illegal status transition"

    def __init__(self, *, entity: str, current: str, target: str, allowed: Iterable[str]):
        # str(): a TextChoices member reads as its value ('payment_due'), not InvoiceStatus.PAYMENT_DUE.
        current, target, allowed = str(current), str(target), sorted(str(a) for a in allowed)
        super().__init__(
            f"{entity} cannot move from {current!r} to {target!r}.",
            extra={"currentStatus": current, "requestedStatus": target, "allowedNextStatuses": allowed},
        )
        self.current = current
        self.target = target
        self.allowed = allowed


class IdempotencyKeyReused(ApplicationError):
    status = 422
    code = "idempotency-key-reused"
    title = "Idempotency key reused with a different request"


class PermissionMissing(ApplicationError):
    """The caller's roles in the tenant do not grant the permission the operation needs."""

    status = 403
    code = "permission-missing"
    title = "Permission missing"

    def __init__(self, permission: str, *, detail: str | None = None):
        super().__init__(
            detail or f"This needs the permission {permission!r}, which none of your roles in this tenant grants.",
            extra={"permission": permission},
        )
        self.permission = permission
