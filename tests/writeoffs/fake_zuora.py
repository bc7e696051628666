"""A local stand-in for Zuora's REST API on 127.0.0.1, so the real `requests` code path runs.

It keeps invoices, items, taxation items and accounts in memory, honours Idempotency-Key (a repeated
key answers the first response and applies nothing), and can be told to misbehave once per rule:
"429" (refuse before applying), "500-after" (apply, then answer 500), "timeout" (apply, answer late).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


class FakeZuora:
    def __init__(self, *, latency: float = 0.0):
        self.latency = latency
        self.invoices: dict[str, dict] = {}
        self.accounts: dict[str, Decimal] = {}
        self.responses: dict[str, tuple[int, dict]] = {}
        self.adjustments: list[dict] = []
        self.calls: list[tuple[str, str, str | None]] = []
        self.faults: list[tuple[str, str, str]] = []
        self.token_requests = 0
        self.tokens: set[str] = set()
        self.lock = threading.Lock()
        self._ids = itertools.count(1)

    # --- data ------------------------------------------------------------------------------------
    def add_invoice(self, number: str, *, lines: list[tuple[str, str]], balance: str | None = None, credit_balance: str = "0") -> dict:
        """`lines`: (item amount, tax amount) pairs; the balance defaults to their sum."""
        n = next(self._ids)
        account = f"acc-{n}"
        self.accounts[account] = Decimal(credit_balance)
        items = []
        for k, (amount, tax) in enumerate(lines):
            taxes = [{"id": f"tax-{n}-{k}", "available": Decimal(tax)}] if Decimal(tax) else []
            items.append({"id": f"item-{n}-{k}", "available": Decimal(amount), "taxes": taxes})
        total = sum((Decimal(a) + Decimal(t) for a, t in lines), Decimal(0))
        invoice = {"id": f"inv-{n}", "number": number, "accountId": account, "balance": Decimal(balance) if balance else total, "items": items}
        self.invoices[number] = self.invoices[invoice["id"]] = invoice
        return invoice

    def fail_once(self, method: str, path_part: str, kind: str) -> None:
        self.faults.append((method, path_part, kind))

    def _fault(self, method: str, path: str) -> str | None:
        with self.lock:
            for fault in self.faults:
                if fault[0] == method and fault[1] in path:
                    self.faults.remove(fault)
                    return fault[2]
        return None

    # --- server ----------------------------------------------------------------------------------
    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body leave in separate writes: without this, Nagle + delayed ACK add ~40 ms per call
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def _reply(self, status: int, body: dict, headers: dict | None = None):
                data = json.dumps(body, default=float).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_GET(self):
                fake.handle(self, "GET", b"")

            def do_POST(self):
                fake.handle(self, "POST", self._body())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, http, method: str, body: bytes) -> None:
        if self.latency:
            time.sleep(self.latency)
        path = http.path
        key = http.headers.get("Idempotency-Key")
        with self.lock:
            self.calls.append((method, path, key))
        if path == "/oauth/token":
            form = parse_qs(body.decode())
            if form.get("grant_type") != ["client_credentials"] or form.get("client_secret") != ["s3cret"]:
                return http._reply(401, {"error": "invalid_client"})
            with self.lock:
                self.token_requests += 1
                token = f"tok-{self.token_requests}"
                self.tokens.add(token)
            return http._reply(200, {"access_token": token, "token_type": "bearer", "expires_in": 3599})
        if http.headers.get("Authorization", "").removeprefix("Bearer ") not in self.tokens:
            return http._reply(401, {"reasons": [{"message": "Authentication error"}]})
        fault = self._fault(method, path)
        if fault == "429":
            return http._reply(429, {"message": "rate limited"}, {"Retry-After": "0"})
        if method == "POST" and key:
            with self.lock:
                if key in self.responses:
                    status, stored = self.responses[key]
                    return http._reply(status, stored)
        status, answer = self._route(method, path, json.loads(body or b"{}", parse_float=Decimal))
        if method == "POST" and key and status == 200:
            with self.lock:
                self.responses[key] = (status, answer)
        if fault == "500-after":
            return http._reply(500, {"message": "internal error"})
        if fault == "timeout":
            time.sleep(1.0)
        return http._reply(status, answer)

    def _route(self, method: str, path: str, payload: dict) -> tuple[int, dict]:
        parts = path.strip("/").split("/")
        with self.lock:
            if method == "GET" and parts[:2] == ["v1", "invoices"] and len(parts) == 3:
                inv = self.invoices.get(parts[2])
                if inv is None:
                    return 404, {"success": False}
                return 200, {"id": inv["id"], "invoiceNumber": inv["number"], "accountId": inv["accountId"], "balance": inv["balance"]}
            if method == "GET" and parts[:2] == ["v1", "invoices"] and parts[3:] == ["items"]:
                inv = self.invoices[parts[2]]
                return 200, {
                    "invoiceItems": [
                        {
                            "id": item["id"],
                            "availableToCreditAmount": item["available"],
                            "taxationItems": {"data": [{"id": t["id"], "availableToCreditAmount": t["available"]} for t in item["taxes"]]},
                        }
                        for item in inv["items"]
                    ]
                }
            if method == "GET" and parts[:2] == ["v1", "accounts"]:
                return 200, {"basicInfo": {"id": parts[2]}, "metrics": {"creditBalance": self.accounts[parts[2]]}}
            if method == "POST" and path == "/v1/object/credit-balance-adjustment":
                inv = self.invoices[payload["SourceTransactionId"]]
                amount = Decimal(payload["Amount"])
                if amount > self.accounts[inv["accountId"]] or amount > inv["balance"]:
                    return 200, {"Success": False, "Errors": [{"Message": "amount too large"}]}
                self.accounts[inv["accountId"]] -= amount
                inv["balance"] -= amount
                self.adjustments.append({"kind": "credit-balance", **payload})
                return 200, {"Success": True, "Id": f"cba-{len(self.adjustments)}"}
            if method == "POST" and path == "/v1/object/invoice-item-adjustment":
                inv = self.invoices[payload["InvoiceId"]]
                lines = {i["id"]: i for i in inv["items"]} | {t["id"]: t for i in inv["items"] for t in i["taxes"]}
                line = lines.get(payload["SourceId"])
                amount = Decimal(payload["Amount"])
                # as Zuora does, a credit on a negative line is accepted (it makes the line more
                # negative); the write-off must never send one
                over_credit = payload["Type"] == "Credit" and Decimal(0) <= line["available"] < amount if line else False
                over_charge = payload["Type"] == "Charge" and line["available"] < 0 and amount > -line["available"] if line else False
                if line is None or over_credit or over_charge:
                    return 200, {"Success": False, "Errors": [{"Code": "INVALID_VALUE", "Message": "bad adjustment"}]}
                signed = amount if payload["Type"] == "Credit" else -amount
                line["available"] -= signed
                inv["balance"] -= signed
                self.adjustments.append({"kind": "item", **payload})
                return 200, {"Success": True, "Id": f"iia-{len(self.adjustments)}"}
        return 404, {"success": False}
