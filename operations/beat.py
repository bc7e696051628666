"""The beat scheduler: django-celery-beat's DatabaseScheduler, which first brings every app's declared
entries (their `schedules.py`) up to date, so a beat started on its own still has the kernel's
heartbeats and the daily tasks, exactly as `manage.py sync_schedules` writes them."""

from django_celery_beat.schedulers import DatabaseScheduler


class Scheduler(DatabaseScheduler):
    def setup_schedule(self):
        from operations.setup_services import periodic_tasks_sync

        periodic_tasks_sync()
        super().setup_schedule()
