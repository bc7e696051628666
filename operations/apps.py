from django.apps import AppConfig


class OperationsConfig(AppConfig):
    """Operations stand on top of the house: setup, schedules and demo data. They may import every
    app; no app imports them."""

    name = "operations"
    verbose_name = "Operations"
