"""The fault tests' worker app: the application's, plus the segment test journeys.

celery -A tests.journeys.segment_app worker …
"""

from config.celery_app import app
from tests.journeys import segments  # noqa: F401 - registers the segment test journeys

__all__ = ("app",)
