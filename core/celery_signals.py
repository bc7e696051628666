"""Every log line written while a task runs carries its task id and name."""

import structlog
from celery.signals import task_postrun, task_prerun


@task_prerun.connect
def _bind_task_context(task_id=None, task=None, **_):
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=task_id, task_name=getattr(task, "name", None))


@task_postrun.connect
def _clear_task_context(**_):
    structlog.contextvars.clear_contextvars()
