"""Production-safe defaults: with DEBUG off the process refuses the development secret key,
cookies are secure and the browsable API is off."""

import subprocess
import sys
from pathlib import Path

from tests.conftest import subprocess_env

ROOT = Path(__file__).resolve().parents[2]


def _settings_probe(env: dict, expression: str) -> subprocess.CompletedProcess:
    clean = subprocess_env(**env)
    code = f"import django, os; os.environ['DJANGO_SETTINGS_MODULE']='config.settings'; django.setup(); from django.conf import settings as s; print({expression})"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )


def test_refuses_to_start_with_the_development_secret_key_when_debug_is_off():
    result = _settings_probe({"DEBUG": "false"}, "1")

    assert result.returncode != 0
    assert "SECRET_KEY is the public development key" in result.stderr


def test_production_defaults_when_debug_is_off():
    result = _settings_probe(
        {"DEBUG": "false", "SECRET_KEY": "x" * 50},
        "s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.REST_FRAMEWORK['DEFAULT_RENDERER_CLASSES']",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True True ['core.api.renderers.CamelCaseJSONRenderer']"


def test_debug_allows_the_development_key_and_browsable_api():
    result = _settings_probe({"DEBUG": "true"}, "len(s.REST_FRAMEWORK['DEFAULT_RENDERER_CLASSES'])")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"


def test_celery_is_configured_for_at_least_once_json_delivery():
    from config.celery_app import app

    conf = app.conf
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert not conf.task_always_eager
    assert conf.task_routes["invoicing.send_invoice_email"] == {"queue": "io"}
