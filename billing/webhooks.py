"""Payment-rail webhooks: signature verification and the service applying an event once.

Signature header (Stripe's scheme): ``t=<unix seconds>,v1=<hex>[,v1=<hex>…]`` where each v1 is
HMAC-SHA256 over ``"{t}.{raw body}"`` with one of the provider's secrets. Several v1 values let a
rail sign with the old and the new secret while a secret rotates.

Event body (JSON): ``{"id": "evt_…", "type": "payment.processing" | "payment.completed" |
"payment.failed", "data": {"railTransactionId": "…", "failureReason": "…"}}``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime

import structlog
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.lifecycle import PaymentStatus
from billing.models import Payment, PaymentProvider, WebhookEvent
from billing.services import payment_advance
from core import jsonlimits
from core.actors import Actor
from core.attribution import audited
from core.errors import ApplicationError, Conflict, NotFound, ValidationFailed

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "Ledgerflow-Signature"
# Beyond this many seconds between the signed timestamp and now (either way), a request is
# refused: a captured request cannot be replayed later, and a clock far off is noticed.
TOLERANCE_SECONDS = 300
# t= is Unix seconds in ASCII digits; 12 digits reach the year 33658, so longer is never a real time
# (and a 400-digit number cannot even be compared with a float clock).
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")

EVENT_STATUS = {
    "payment.processing": PaymentStatus.PROCESSING,
    "payment.completed": PaymentStatus.COMPLETED,
    "payment.failed": PaymentStatus.FAILED,
}


class SignatureInvalid(ApplicationError):
    status = 400
    code = "invalid-signature"
    title = "Webhook signature invalid"


def sign(*, secret: str, timestamp: int, body: bytes) -> str:
    """The v1 signature of `body` at `timestamp` (what a rail computes; used by tests too)."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_signature(*, header: str | None, body: bytes, secrets: list[str], now: datetime) -> int:
    """The signed timestamp if any v1 signature in `header` matches any secret; else SignatureInvalid."""
    if not header:
        raise SignatureInvalid(f"The {SIGNATURE_HEADER} header is missing.")
    timestamp, signatures = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and _UNIX_SECONDS.fullmatch(value):
            timestamp = int(value)
        elif key == "v1" and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise SignatureInvalid(f"The {SIGNATURE_HEADER} header needs t= (Unix seconds) and at least one v1=.")
    if abs(int(now.timestamp()) - timestamp) > TOLERANCE_SECONDS:
        raise SignatureInvalid("The signature timestamp is too far from now.")
    expected = [sign(secret=secret, timestamp=timestamp, body=body) for secret in secrets]
    # Compare every pair in constant time and without stopping early.
    matched = False
    for candidate in signatures:
        for wanted in expected:
            matched |= hmac.compare_digest(candidate.encode(), wanted.encode())
    if not matched:
        raise SignatureInvalid("No signature matches.")
    return timestamp


@dataclass(frozen=True, slots=True)
class WebhookResult:
    event_id: str
    outcome: str
    replayed: bool
    payment_id: int | None = None


def _parse(body: bytes) -> tuple[str, str, dict]:
    try:
        event = jsonlimits.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed(
            f"The body is not JSON (or nests deeper than {jsonlimits.MAX_JSON_DEPTH} levels).", field="body"
        ) from None
    if jsonlimits.has_nul(event):
        raise ValidationFailed("The event must not contain NUL characters.", field="body")
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not event["id"]:
        raise ValidationFailed("The event needs a string id.", field="id")
    if not isinstance(event.get("type"), str):
        raise ValidationFailed("The event needs a string type.", field="type")
    data = event.get("data")
    if not isinstance(data, dict):
        raise ValidationFailed("The event needs a data object.", field="data")
    return event["id"][:200], event["type"][:64], data


def payment_webhook_receive(
    *, provider_slug: str, signature_header: str | None, body: bytes
) -> WebhookResult:
    """Verify and apply one rail event, once: a replayed event id answers as before and changes
    nothing; an event never moves a payment backwards; a completed payment does not settle its
    invoice (reconciliation does that once the bank agrees), it only triggers matching."""
    provider = PaymentProvider.objects.filter(slug=provider_slug, is_active=True).first()
    if provider is None:
        raise NotFound("No such payment provider.")
    verify_signature(header=signature_header, body=body, secrets=provider.secrets, now=timezone.now())
    event_id, event_type, data = _parse(body)
    actor = Actor.system(f"webhook:{provider.slug}")
    reason = f"rail event {event_type} {event_id}"
    with audited(actor=actor, reason=reason):
        # The event row is claimed first: a concurrent duplicate waits on the unique index and
        # then finds it taken; a failure below rolls the claim back so the rail may retry.
        try:
            with transaction.atomic():
                event = WebhookEvent.objects.create(
                    tenant_id=provider.tenant_id,
                    provider=provider,
                    event_id=event_id,
                    event_type=event_type,
                    outcome=WebhookEvent.Outcome.IGNORED,
                    payload={"type": event_type, "data": data},
                )
        except IntegrityError:
            previous = WebhookEvent.objects.get(provider=provider, event_id=event_id)
            return WebhookResult(
                event_id=event_id, outcome=previous.outcome, replayed=True, payment_id=previous.payment_id
            )
        target = EVENT_STATUS.get(event_type)
        rail_id = data.get("railTransactionId")
        payment = None
        if target is not None and isinstance(rail_id, str) and rail_id:
            payment = (
                Payment.objects.select_for_update()
                .filter(tenant_id=provider.tenant_id, rail_transaction_id=rail_id)
                .first()
            )
        if target is None:
            outcome = WebhookEvent.Outcome.IGNORED
        elif payment is None:
            outcome = WebhookEvent.Outcome.UNKNOWN_PAYMENT
        else:
            failure = data.get("failureReason")
            moved = payment_advance(
                payment=payment,
                actor=actor,
                status=target,
                reason=reason,
                failure_reason=failure if isinstance(failure, str) else "declined by the rail",
            )
            outcome = WebhookEvent.Outcome.STALE if moved is None else WebhookEvent.Outcome.APPLIED
        event.payment = payment
        event.outcome = outcome
        event.save(update_fields=["payment", "outcome"])
    log.info("payment_webhook.received", provider=provider.slug, event_id=event_id, outcome=outcome)
    return WebhookResult(
        event_id=event_id, outcome=outcome, replayed=False, payment_id=payment.pk if payment else None
    )


def payment_provider_save(*, provider: PaymentProvider, actor: Actor) -> PaymentProvider:
    """Create or change a rail's webhook settings (the admin's form), attributed in the audit trail."""
    if not provider.signing_secret:
        raise ValidationFailed("A provider needs a signing secret.", field="signingSecret")
    with audited(actor=actor, reason="payment provider saved"):
        provider.save()
    return provider


def payment_provider_create(*, tenant, actor: Actor, slug: str, name: str, signing_secret: str, is_active: bool = True) -> PaymentProvider:
    """A new rail for `tenant`; its slug is unique over all tenants (409 if taken)."""
    if PaymentProvider.objects.filter(slug=slug).exists():
        raise Conflict(f"A payment provider {slug!r} exists already.", field="slug")
    provider = PaymentProvider(
        tenant=tenant, slug=slug, name=name, signing_secret=signing_secret, is_active=is_active, secret_rotated_at=timezone.now()
    )
    return payment_provider_save(provider=provider, actor=actor)


def payment_provider_rotate_secret(*, provider: PaymentProvider, secret: str, actor: Actor) -> PaymentProvider:
    """The rail's new signing secret; the current one stays accepted as the previous one until
    `payment_provider_end_rotation`, so no event is refused while the rail switches over."""
    if not secret:
        raise ValidationFailed("A provider needs a signing secret.", field="signingSecret")
    with audited(actor=actor, reason="payment provider secret rotated"):
        locked = PaymentProvider.objects.select_for_update().get(pk=provider.pk)
        if secret != locked.signing_secret:
            locked.previous_signing_secret = locked.signing_secret
            locked.signing_secret = secret
            locked.secret_rotated_at = timezone.now()
            locked.save(update_fields=["signing_secret", "previous_signing_secret", "secret_rotated_at"])
    return locked


def payment_provider_end_rotation(*, provider: PaymentProvider, actor: Actor) -> PaymentProvider:
    """Stop accepting the previous secret (the rail signs with the new one only)."""
    with audited(actor=actor, reason="payment provider previous secret dropped"):
        locked = PaymentProvider.objects.select_for_update().get(pk=provider.pk)
        if locked.previous_signing_secret:
            locked.previous_signing_secret = ""
            locked.secret_rotated_at = timezone.now()
            locked.save(update_fields=["previous_signing_secret", "secret_rotated_at"])
    return locked
