"""The role matrix: every operation of the OpenAPI schema × every role (and a stranger, and nobody).

The operations come from drf-spectacular's schema at test time, and each must be named in
EXPECTED, so an endpoint added without saying who may call it fails here. For each caller the
answer is what tenancy/roles.py's table says: allowed → neither 401 nor 403 (nor a 5xx); refused → 403
problem naming the missing permission. A member of another tenant naming this tenant (X-Tenant)
is refused 403 before any permission is looked at; their requests for this tenant's objects by id
answer 404 (tests/api/test_tenant_isolation.py).
"""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.generators import SchemaGenerator
from rest_framework.permissions import AllowAny
from rest_framework.test import APIClient, APIRequestFactory
from rest_framework.views import APIView

from tenancy.permissions import HasTenantPermission
from tenancy.roles import ALL_PERMISSIONS, ROLE_PERMISSIONS, Role
from tests.factories import MembershipFactory, TenantFactory, TokenFactory

# operationId → the permission it needs (journeys_step: an approval decision; its "cancel" step is below).
EXPECTED = {
    **dict.fromkeys(
        [
            "bank_accounts_list", "bank_accounts_retrieve", "bank_entries_list", "bank_entries_retrieve",
            "bank_statements_list", "bank_statements_retrieve", "charges_list", "charges_retrieve",
            "consolidated_invoices_list", "consolidated_invoices_retrieve", "consolidation_customer_settings",
            "consolidation_scheduler_status", "customers_list", "customers_retrieve", "discrepancies_list",
            "discrepancies_retrieve", "invoices_list", "invoices_retrieve", "journeys_list", "journeys_status",
            "journeys_result", "payments_list", "payments_retrieve", "reconciliations_list",
            "reconciliations_retrieve", "subscriptions_list", "subscriptions_retrieve", "writeoffs_report_csv",
        ],
        "books.view",
    ),
    "events_list": "audit.view",
    "events_retrieve": "audit.view",
    "customers_create": "customers.manage",
    "customers_update": "customers.manage",
    "customers_partial_update": "customers.manage",
    "subscriptions_create": "subscriptions.manage",
    "subscriptions_cancel_create": "subscriptions.manage",
    "charges_create": "charges.manage",
    "payments_create": "payments.manage",
    "payments_transition_create": "payments.manage",
    "invoices_create": "invoices.manage",
    "invoices_issue_create": "invoices.manage",
    "invoices_cancel_create": "invoices.manage",
    "bank_accounts_create": "statements.import",
    "bank_statements_create": "statements.import",
    "bank_entries_match_create": "reconciliation.match",
    "reconciliations_unmatch_create": "reconciliation.match",
    "consolidated_invoices_settle_create": "reconciliation.match",
    "consolidated_invoices_generate_create": "consolidation.manage",
    "consolidation_customer_settings_update": "consolidation.manage",
    "consolidation_customer_settings_patch": "consolidation.manage",
    "consolidation_scheduler_trigger": "consolidation.manage",
    "monthlyInvoicingBatch_start": "journeys.start",
    "journeys_step": "journeys.decide",
    "memberships_list": "memberships.manage",
    "memberships_create": "memberships.manage",
    "memberships_grant_role": "memberships.manage",
    "memberships_revoke_role": "memberships.manage",
    **dict.fromkeys(
        [
            "settings_consolidation", "settings_consolidation_update", "settings_payment_providers_list",
            "settings_payment_providers_create", "settings_payment_provider", "settings_payment_provider_update",
            "settings_payment_provider_end_rotation", "settings_payment_provider_rotate_secret",
            "settings_reconciliation", "settings_reconciliation_update", "settings_write_offs",
            "settings_write_offs_update",
        ],
        "settings.manage",
    ),
}
# Path parameters: ids no row has (the permission is checked before anything is looked up).
PATH_VALUES = {"step_id": "approveInvoiceBatch", "stepId": "approveInvoiceBatch", "role": "viewer", "slug": "no-such-rail"}
STRANGER, ANONYMOUS = "member of another tenant", "anonymous"
CALLERS = [*Role.values, STRANGER, ANONYMOUS]


def _operations():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    found = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            url = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES.get(m.group(1), "987654"), path)
            found.append((operation["operationId"], method.upper(), url))
    # The step "cancel" of the same operation stops a run: who starts journeys may.
    found.append(("journeys_step (cancel)", "POST", "/api/v1/journeys/987654/steps/cancel"))
    return found


OPERATIONS = _operations()
EXPECTED["journeys_step (cancel)"] = "journeys.start"


def test_every_operation_of_the_schema_says_which_permission_it_needs():
    ids = {operation_id for operation_id, _, _ in OPERATIONS}

    assert sorted(ids - EXPECTED.keys()) == [], "new operations: say in EXPECTED which permission each needs"
    assert sorted(EXPECTED.keys() - ids) == [], "operations gone from the schema"
    assert set(EXPECTED.values()) <= ALL_PERMISSIONS


@pytest.fixture
def callers(db):
    """One member per role of tenant acme, a member of globex with every role, and nobody."""
    tenant = TenantFactory(slug="acme")
    other = TenantFactory(slug="globex")
    clients = {}
    for role in Role.values:
        membership = MembershipFactory(tenant=tenant, roles=[role])
        clients[role] = _client(membership.user)
    clients[STRANGER] = _client(MembershipFactory(tenant=other, roles=Role.values).user, tenant="acme")
    clients[ANONYMOUS] = APIClient()
    return clients


def _client(user, tenant: str | None = None) -> APIClient:
    client = APIClient()
    headers = {"HTTP_AUTHORIZATION": f"Token {TokenFactory(user=user).key}"}
    if tenant:
        headers["HTTP_X_TENANT"] = tenant
    client.credentials(**headers)
    return client


def _call(client, method: str, url: str):
    if method in ("GET", "DELETE"):
        return getattr(client, method.lower())(url)
    return getattr(client, method.lower())(url, {}, format="json")


@pytest.mark.django_db
@pytest.mark.parametrize("caller", CALLERS)
def test_each_operation_answers_what_the_roles_table_says(callers, caller, django_capture_on_commit_callbacks):
    wrong = []
    with django_capture_on_commit_callbacks(execute=False):
        for operation_id, method, url in OPERATIONS:
            needed = EXPECTED[operation_id]
            response = _call(callers[caller], method, url)
            body = response.json() if response["Content-Type"].startswith("application/") else {}
            if caller == ANONYMOUS:
                ok = response.status_code == 401 and body.get("code") == "not-authenticated"
            elif caller == STRANGER:
                ok = response.status_code == 403 and "permission" not in body
            elif needed in ROLE_PERMISSIONS[caller]:
                ok = response.status_code not in (401, 403) and response.status_code < 500
            else:
                ok = (
                    response.status_code == 403
                    and response["Content-Type"].startswith("application/problem+json")
                    and (body.get("code"), body.get("permission")) == ("permission-missing", needed)
                    and needed in body.get("detail", "")
                )
            if not ok:
                wrong.append(f"{operation_id} {method} {url}: {response.status_code} {body or response.content[:200]!r}")

    assert wrong == [], f"{caller} ({len(wrong)} of {len(OPERATIONS)} wrong):\n" + "\n".join(wrong)


# --- No view without a declared permission ---------------------------------------------------------
class _Forgetful(APIView):
    def get(self, request):  # pragma: no cover - refused before it runs
        raise AssertionError("a view that declares no permission must not run")


@pytest.mark.django_db
def test_a_view_that_declares_no_permission_is_refused(tenant_a):
    request = APIRequestFactory().get("/api/v1/forgetful", HTTP_AUTHORIZATION=f"Token {tenant_a.token.key}")

    response = _Forgetful.as_view()(request)

    assert response.status_code == 403
    assert response.data["code"] == "permission-undeclared"


# Public on purpose: the rail signs its webhook (HMAC), there is no user to hold a role; an unknown
# path answers 404 to anyone.
PUBLIC_VIEWS = {"payment-webhook", "api-not-found"}  # URL names


def _api_views(resolver=None, prefix=""):
    resolver = resolver or get_resolver()
    for pattern in resolver.url_patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _api_views(pattern, route)
        elif isinstance(pattern, URLPattern) and route.startswith("api/v1/"):
            view = getattr(pattern.callback, "cls", None)
            if view is not None and issubclass(view, APIView):
                yield route, view, pattern.name


def test_every_api_view_declares_a_permission_or_is_listed_public():
    undeclared = []
    for route, view, name in _api_views():
        if name in PUBLIC_VIEWS:
            assert set(view.permission_classes) <= {AllowAny}, name
            continue
        if view.__module__.startswith("drf_spectacular"):
            continue  # the schema and its docs page: public, like the API's description
        declares = getattr(view, "required_permissions", None) or callable(getattr(view, "required_permission", None))
        if not declares or HasTenantPermission not in [c for c in view.permission_classes]:
            undeclared.append(f"{route} {view.__name__}")

    assert undeclared == []


def test_every_declared_permission_is_in_the_table():
    for _, view, _ in _api_views():
        declared = getattr(view, "required_permissions", None)
        names = [declared] if isinstance(declared, str) else list((declared or {}).values())
        assert set(names) <= ALL_PERMISSIONS, view.__name__
