"""Audit update triggers never plan a nested loop over their transition tables (which have no
statistics): a 100,000-row UPDATE would otherwise join old and new rows quadratically.

Draft line items and tax items are no longer audited on INSERT: a draft's lines are part of its
creation, recorded by the invoice's own `created` event with subtotal, tax and total; every later
change to a line (credits, charges) is still audited by the UPDATE triggers.
"""

from django.db import migrations

FORWARD = """
DO $$
DECLARE fn record;
BEGIN
    FOR fn IN SELECT proname FROM pg_proc WHERE proname LIKE 'audit\\_%\\_upd' LOOP
        EXECUTE format('ALTER FUNCTION %I() SET enable_nestloop = off', fn.proname);
    END LOOP;
END $$;
DROP TRIGGER IF EXISTS audit_invoicing_invoiceitem_ins ON invoicing_invoiceitem;
DROP TRIGGER IF EXISTS audit_invoicing_taxitem_ins ON invoicing_taxitem;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0004_reconciliation_audit_triggers"),
        ("journeys", "0002_audit_and_roles"),
        ("consolidation", "0002_audit_triggers"),
    ]

    operations = [migrations.RunSQL(FORWARD, migrations.RunSQL.noop)]
