"""Zuora: write off one invoice through the REST API (invoice item adjustments), over `requests`.

Per invoice: read it; if its balance is zero, skip; read its items with their taxation items and
(for a positive balance) the account's credit balance; plan with the shared rule (credits on
positive lines for a positive balance, charges on negative lines for a negative one) before posting
anything; then apply the credit balance first and post one invoice item adjustment per planned line. Every POST carries an Idempotency-Key derived from
(invoice, line, business date), so a retried request, task or run on the same day applies once.

Transport: connect and read timeouts on every call; 429 and 5xx are retried with exponential
backoff (Retry-After honoured, capped); anything else, and a timeout, fails this invoice only.
OAuth client-credentials tokens are cached per (base URL, client id) until shortly before expiry.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import requests
import structlog

from core.money import ZERO
from writeoffs.providers import CREDIT, InvoiceResult, Line, WriteOffFailed, idempotency_key, plan_adjustments

log = structlog.get_logger(__name__)

# (connect, read) seconds: connect fails fast when Zuora is unreachable; reads of large invoices
# take a few seconds at worst.
TIMEOUTS = (3.05, 30.0)
# Retries of one request on 429 / 5xx: 4 with backoff 0.5, 1, 2, 4 s stays under ten seconds.
MAX_RETRIES = 4
BACKOFF_BASE = 0.5
RETRY_AFTER_CAP = 10.0
# A token is renewed this long before Zuora says it expires, so no request carries a dying token.
TOKEN_MARGIN = 60.0


class ZuoraError(WriteOffFailed):
    code = "zuora-error"
    title = "Zuora refused or did not answer"


@dataclass
class _Token:
    value: str
    expires_at: float


_TOKENS: dict[tuple[str, str], _Token] = {}
_TOKENS_LOCK = threading.Lock()


def _decimal(value) -> Decimal:
    return Decimal(str(value)) if value is not None else ZERO


class ZuoraClient:
    """One tenant's Zuora connection. Thread-safe: a session per thread, a shared token cache."""

    def __init__(self, *, base_url: str, client_id: str, client_secret: str, timeouts=TIMEOUTS, sleep=time.sleep):
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.timeouts = timeouts
        self._sleep = sleep
        self._local = threading.local()

    # --- transport ------------------------------------------------------------------------------
    @property
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _token(self, *, renew: bool = False) -> str:
        key = (self.base_url, self.client_id)
        with _TOKENS_LOCK:
            token = _TOKENS.get(key)
            if token is not None and not renew and token.expires_at > time.monotonic():
                return token.value
            response = self._send(
                "POST",
                "/oauth/token",
                data={"client_id": self.client_id, "client_secret": self.client_secret, "grant_type": "client_credentials"},
                authenticated=False,
            )
            body = response.json()
            token = _Token(body["access_token"], time.monotonic() + float(body.get("expires_in", 3600)) - TOKEN_MARGIN)
            _TOKENS[key] = token
            return token.value

    def _send(self, method: str, path: str, *, authenticated: bool = True, idempotency_key: str | None = None, **kwargs):
        headers = {"Accept": "application/json"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        renewed = False
        for attempt in range(MAX_RETRIES + 1):
            if authenticated:
                headers["Authorization"] = f"Bearer {self._token(renew=renewed)}"
            try:
                response = self._session.request(method, self.base_url + path, headers=headers, timeout=self.timeouts, **kwargs)
            except requests.Timeout as exc:
                raise ZuoraError(f"{method} {path}: timed out") from exc
            except requests.ConnectionError as exc:
                raise ZuoraError(f"{method} {path}: connection failed") from exc
            if response.status_code == 401 and authenticated and not renewed:
                renewed = True  # the cached token was revoked early: renew once
                continue
            if response.status_code == 429 or response.status_code >= 500:
                if attempt == MAX_RETRIES:
                    raise ZuoraError(f"{method} {path}: HTTP {response.status_code} after {MAX_RETRIES} retries")
                delay = BACKOFF_BASE * 2**attempt
                retry_after = response.headers.get("Retry-After", "")
                if retry_after.replace(".", "", 1).isdigit():
                    delay = min(float(retry_after), RETRY_AFTER_CAP)
                log.info("zuora.retry", method=method, path=path, status=response.status_code, attempt=attempt + 1, delay=delay)
                self._sleep(delay)
                continue
            if response.status_code >= 400:
                raise ZuoraError(f"{method} {path}: HTTP {response.status_code}: {response.text[:300]}")
            return response
        raise ZuoraError(f"{method} {path}: unauthorised")

    def _get(self, path: str) -> dict:
        return self._send("GET", path).json(parse_float=Decimal)

    def _post(self, path: str, payload: dict, *, key: str) -> dict:
        body = self._send("POST", path, json=payload, idempotency_key=key).json(parse_float=Decimal)
        if body.get("Success") is False or body.get("success") is False:
            raise ZuoraError(f"POST {path}: {body.get('Errors') or body.get('reasons') or body}")
        return body

    # --- the write-off ---------------------------------------------------------------------------
    def write_off_invoice(self, *, invoice_key: str, business_date: date, reason_code: str, comment: str) -> InvoiceResult:
        """Bring one Zuora invoice's balance to zero with the fewest adjustments (see module docstring)."""
        invoice = self._get(f"/v1/invoices/{invoice_key}")
        invoice_id = str(invoice["id"])
        balance = _decimal(invoice.get("balance"))
        if balance == ZERO:
            return InvoiceResult(status="skipped")
        written_off, count = ZERO, 0
        applied = ZERO
        if balance > ZERO and invoice.get("accountId"):
            account = self._get(f"/v1/accounts/{invoice['accountId']}")
            credit_balance = _decimal((account.get("metrics") or {}).get("creditBalance"))
            applied = max(min(credit_balance, balance), ZERO)
        lines = []
        for item in self._get(f"/v1/invoices/{invoice_key}/items").get("invoiceItems", []):
            lines.append(Line(ref=str(item["id"]), kind="InvoiceDetail", available=_decimal(item.get("availableToCreditAmount"))))
            for tax in (item.get("taxationItems") or {}).get("data", []):
                lines.append(Line(ref=str(tax["id"]), kind="Tax", available=_decimal(tax.get("availableToCreditAmount"))))
        # planned before anything is posted: an invoice the rule cannot zero is left untouched
        plan = plan_adjustments(balance - applied, lines)
        if applied > ZERO:
            self._post(
                "/v1/object/credit-balance-adjustment",
                {
                    "Amount": str(applied),
                    "SourceTransactionId": invoice_id,
                    "Type": "Decrease",
                    "ReasonCode": reason_code,
                    "Comment": comment,
                },
                key=idempotency_key(invoice_ref=invoice_id, line_ref="credit-balance", business_date=business_date),
            )
            written_off += applied
            count += 1
        for planned in plan:
            self._post(
                "/v1/object/invoice-item-adjustment",
                {
                    "AdjustmentDate": business_date.isoformat(),
                    "Amount": str(planned.amount),
                    "InvoiceId": invoice_id,
                    "SourceId": planned.line.ref,
                    "SourceType": planned.line.kind,
                    "Type": planned.type,
                    "ReasonCode": reason_code,
                    "Comment": comment,
                },
                key=idempotency_key(invoice_ref=invoice_id, line_ref=planned.line.ref, business_date=business_date),
            )
            written_off += planned.amount if planned.type == CREDIT else -planned.amount
            count += 1
        return InvoiceResult(status="succeeded", written_off=written_off, adjustments=count)
