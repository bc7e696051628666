from django.core.management.base import BaseCommand

from operations.setup_services import periodic_tasks_sync


class Command(BaseCommand):
    help = "Create or update the fixed periodic tasks in django-celery-beat's schedule tables."

    def handle(self, *args, **options):
        result = periodic_tasks_sync()
        for label, names in (
            ("created", result.created),
            ("updated", result.updated),
            ("unchanged", result.unchanged),
        ):
            for name in names:
                self.stdout.write(f"Periodic task {name}: {label}.")
