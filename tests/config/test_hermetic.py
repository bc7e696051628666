"""The suite does not take its configuration from the caller's shell."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT, subprocess_env, suite_database_url


def _test_settings(**env) -> list[str]:
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.REDIS_URL); print(s.CELERY_BROKER_URL)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=subprocess_env(DJANGO_SETTINGS_MODULE="config.settings_test", **env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.django_db
def test_a_redis_url_in_the_environment_does_not_move_the_tests_off_redis_database_15():
    urls = _test_settings(
        DATABASE_URL=suite_database_url(),
        REDIS_URL="redis://127.0.0.1:6379/3",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/4",
    )

    assert urls == ["redis://127.0.0.1:6379/15", "redis://127.0.0.1:6379/15"]


@pytest.mark.django_db
def test_only_the_test_only_variable_moves_the_tests_redis():
    urls = _test_settings(
        DATABASE_URL=suite_database_url(),
        REDIS_URL="redis://127.0.0.1:6379/3",
        LEDGERFLOW_TEST_REDIS_URL="redis://127.0.0.1:6379/9",
    )

    assert urls == ["redis://127.0.0.1:6379/9", "redis://127.0.0.1:6379/9"]


def test_a_subprocess_stack_gets_none_of_the_callers_ledgerflow_configuration(monkeypatch):
    for name, value in {
        "EMAIL_URL": "smtp://127.0.0.1:1",
        "DATABASE_URL": "postgres://elsewhere/prod",
        "REDIS_URL": "redis://elsewhere/0",
        "CELERY_BROKER_URL": "redis://elsewhere/1",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "LEDGERFLOW_SERVICES": "external",
        "DEBUG": "true",
        "SECRET_KEY": "from-the-shell",
    }.items():
        monkeypatch.setenv(name, value)

    env = subprocess_env(PORT="8123")

    assert env["PORT"] == "8123" and "PATH" in env
    assert not {"EMAIL_URL", "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE",
                "LEDGERFLOW_SERVICES", "DEBUG", "SECRET_KEY"} & set(env)


def _email_backend(**env) -> str:
    code = "import django; django.setup(); from django.conf import settings as s; print(s.EMAIL_CONFIG['EMAIL_BACKEND'])"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=subprocess_env(DJANGO_SETTINGS_MODULE="config.settings", DEBUG="true", **env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_a_subprocess_stack_reads_no_dotenv_file(tmp_path):
    # given a dotenv file as a developer keeps one, naming a mail server
    dotenv = tmp_path / ".env"
    dotenv.write_text("EMAIL_URL=smtp://127.0.0.1:1\n")

    # then a process told to read it uses it, and a test's subprocess reads no dotenv at all
    assert _email_backend(LEDGERFLOW_DOTENV=str(dotenv)) == "django.core.mail.backends.smtp.EmailBackend"
    assert subprocess_env()["LEDGERFLOW_DOTENV"] == "off"
    assert _email_backend() == "django.core.mail.backends.console.EmailBackend"
