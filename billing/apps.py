from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        # The kernel asks the project who may decide an approval step; tenancy (memberships and their
        # roles) answers from the one roles table, so the API, the admin and the kernel agree.
        from core.roles import may
        from journeys.public import set_decider_check

        set_decider_check(may)
