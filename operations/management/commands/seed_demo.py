from django.core.management.base import BaseCommand

from operations.demo import demo_seed


class Command(BaseCommand):
    help = "Load the demo tenants, customers, invoices and one user per role; a second run creates nothing."

    def handle(self, *args, **options):
        report = demo_seed()
        self.stdout.write(
            f"Demo data: {report.tenants_created} tenants, {report.customers_created} customers and "
            f"{report.invoices_created} invoices created; {report.customers_existing} customers already there."
        )
        self.stdout.write("Demo API tokens, one user per role (send as 'Authorization: Token <token>'):")
        for entry in report.tokens:
            self.stdout.write(f"  {entry.tenant_slug:<8} {entry.username:<20} {entry.role:<17} {entry.token}")
