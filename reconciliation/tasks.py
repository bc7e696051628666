"""Thin tasks: the matching engine per tenant, and the daily run fanning out over tenants."""

from celery import shared_task

from core.actors import Actor
from reconciliation import services


@shared_task(name="reconciliation.run_matching", bind=True)
def run_matching(self, tenant_id: int) -> int:
    """Match one tenant's unmatched bank entries; running it twice changes nothing more."""
    result = services.reconciliation_run(
        tenant_id=tenant_id, actor=Actor.for_task(self.name, self.request.id)
    )
    return result.reconciled


@shared_task(name="reconciliation.run_daily_matching", bind=True)
def run_daily_matching(self) -> int:
    """The daily run: one matching task per tenant with work (the engine is set-based inside a
    tenant, so a tenant is the chunk). Also flags completed payments with no bank credit."""
    tenant_ids = services.tenants_with_matching_work()
    for tenant_id in tenant_ids:
        run_matching.delay(tenant_id)
    return len(tenant_ids)
