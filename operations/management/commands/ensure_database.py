import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from operations.setup_services import database_ensure


class Command(BaseCommand):
    help = "Create the configured PostgreSQL database if it does not exist (runs before migrate)."
    # System checks may query the database, which is what this command is about to create.
    requires_system_checks = []

    def handle(self, *args, **options):
        name = settings.DATABASES["default"]["NAME"]
        try:
            created = database_ensure()
        except psycopg.OperationalError as exc:
            raise CommandError(f"Cannot reach the PostgreSQL server for database {name}: {exc}") from exc
        self.stdout.write(f"Database {name}: {'created' if created else 'already there'}.")
