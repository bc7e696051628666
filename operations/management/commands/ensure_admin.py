from django.core.management.base import BaseCommand

from operations.demo import DEMO_TENANT_SLUGS
from operations.setup_services import admin_user_ensure


class Command(BaseCommand):
    help = (
        "Create or update superuser 'admin' (password from $LEDGERFLOW_ADMIN_PASSWORD, else generated once "
        "into .ledgerflow/admin-password), a member of the demo tenants, and print the login."
    )

    def handle(self, *args, **options):
        login = admin_user_ensure(tenant_slugs=DEMO_TENANT_SLUGS)
        state = "created" if login.created else "ready"
        tenants = ", ".join(login.tenant_slugs) or "none"
        self.stdout.write(f"Admin login {state}: username {login.username}, password {login.password}")
        self.stdout.write(f"  (password from {login.password_source}; member of tenants: {tenants})")
