from django.apps import AppConfig


class WriteoffsConfig(AppConfig):
    name = "writeoffs"
