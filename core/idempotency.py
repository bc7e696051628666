"""Idempotency-Key for POSTs that create money records: a retry gets the first answer again."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from core.errors import IdempotencyKeyReused, ValidationFailed
from core.models import IdempotencyKey

MAX_KEY_LENGTH = 255


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: Any
    replayed: bool


def request_fingerprint(*, method: str, path: str, body: Any) -> str:
    canonical = json.dumps({"method": method, "path": path, "body": body}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def run_idempotently(
    *, tenant, key: str, method: str, path: str, body: Any, create: Callable[[], tuple[int, Any]]
) -> StoredResponse:
    """Run `create` once per (tenant, key); later calls with the same request get its response.

    The key row is inserted in the same transaction as the records `create` writes: a concurrent
    retry blocks on the row until the first commits, and a failed first attempt leaves no key.
    """
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ValidationFailed(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters.", field="Idempotency-Key"
        )
    fingerprint = request_fingerprint(method=method, path=path, body=body)
    with transaction.atomic():
        record, created = IdempotencyKey.objects.select_for_update().get_or_create(
            tenant=tenant,
            key=key,
            defaults={"method": method, "path": path, "request_hash": fingerprint},
        )
        if not created:
            if record.request_hash != fingerprint:
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was already used with a different request.",
                    extra={"idempotencyKey": key},
                )
            return StoredResponse(status=record.response_status, body=record.response_body, replayed=True)
        status, response_body = create()
        record.response_status = status
        record.response_body = response_body
        record.save(update_fields=["response_status", "response_body"])
    return StoredResponse(status=status, body=response_body, replayed=False)
