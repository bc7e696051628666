"""The bench worker's Celery app: the application's, plus the bench's hop task and journeys.

celery -A bench.bench_app worker …
"""

from bench import bench_journeys  # noqa: F401 - registers bench.hop and the bench journeys
from config.celery_app import app

__all__ = ("app",)
