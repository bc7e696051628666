"""Bring an installation to a working state: database, admin login, periodic schedules.

Each service is idempotent: `make run` calls them on every start, and a second call changes nothing.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import psycopg
import structlog
from django.apps import apps
from django.conf import settings
from django.db import transaction
from psycopg import errors, sql

from core.periodic import FixedSchedule

log = structlog.get_logger(__name__)

ADMIN_USERNAME = "admin"
ADMIN_PASSWORD_ENV = "LEDGERFLOW_ADMIN_PASSWORD"  # noqa: S105 - the variable's name, not a password
# Outside the repository's tracked files (.ledgerflow/ is git-ignored): generated once per checkout.
ADMIN_PASSWORD_FILE = Path(settings.BASE_DIR) / ".ledgerflow" / "admin-password"
MAINTENANCE_DATABASE = "postgres"


# --- Database -----------------------------------------------------------------------------------
def database_ensure(*, alias: str = "default") -> bool:
    """The configured PostgreSQL database exists afterwards. True if this call created it.

    Runs before migrations, so it cannot use Django's connection (it would fail on a missing
    database): it connects with psycopg to the server's maintenance database instead.
    """
    config = settings.DATABASES[alias]
    name = config["NAME"]
    params = {
        "host": config.get("HOST") or None,
        "port": config.get("PORT") or None,
        "user": config.get("USER") or None,
        "password": config.get("PASSWORD") or None,
        **config.get("OPTIONS", {}),
    }
    params = {key: value for key, value in params.items() if value is not None}
    with psycopg.connect(dbname=MAINTENANCE_DATABASE, autocommit=True, connect_timeout=10, **params) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return False
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except errors.DuplicateDatabase:
            # Another process created it between our check and our CREATE: the goal is met.
            return False
    log.info("database.created", database=name, host=params.get("host"))
    return True


# --- Admin login --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AdminLogin:
    username: str
    password: str
    # Where the password came from: the environment variable or the generated file.
    password_source: str
    created: bool
    tenant_slugs: tuple[str, ...]


def _admin_password() -> tuple[str, str]:
    from_env = os.environ.get(ADMIN_PASSWORD_ENV, "")
    if from_env:
        return from_env, f"${ADMIN_PASSWORD_ENV}"
    if ADMIN_PASSWORD_FILE.exists():
        stored = ADMIN_PASSWORD_FILE.read_text().strip()
        if stored:
            return stored, str(ADMIN_PASSWORD_FILE)
    ADMIN_PASSWORD_FILE.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    ADMIN_PASSWORD_FILE.write_text(password + "\n")
    ADMIN_PASSWORD_FILE.chmod(0o600)
    return password, str(ADMIN_PASSWORD_FILE)


def admin_user_ensure(*, tenant_slugs: tuple[str, ...] = ()) -> AdminLogin:
    """Superuser `admin` exists, logs in with the configured password, and belongs to the named tenants.

    The password is $LEDGERFLOW_ADMIN_PASSWORD if set, else one generated on the first call and
    kept in .ledgerflow/admin-password, so every later call prints the same login.
    """
    from django.contrib.auth import get_user_model

    from tenancy.models import Membership, Tenant

    password, source = _admin_password()
    user_model = get_user_model()
    with transaction.atomic():
        user, created = user_model.objects.select_for_update().get_or_create(
            username=ADMIN_USERNAME, defaults={"email": "admin@ledgerflow.localhost"}
        )
        changed = created or not (user.is_active and user.is_staff and user.is_superuser)
        user.is_active = user.is_staff = user.is_superuser = True
        if not user.check_password(password):
            user.set_password(password)
            changed = True
        if changed:
            user.save()
        tenants = list(Tenant.objects.filter(slug__in=tenant_slugs).order_by("slug"))
        for tenant in tenants:
            Membership.objects.get_or_create(tenant=tenant, user=user)
    log.info("admin.ensured", created=created, changed=changed, tenants=[t.slug for t in tenants])
    return AdminLogin(
        username=user.username,
        password=password,
        password_source=source,
        created=created,
        tenant_slugs=tuple(t.slug for t in tenants),
    )


# --- Periodic schedules -------------------------------------------------------------------------
def declared_schedules() -> tuple[FixedSchedule, ...]:
    """Every installed app's `SCHEDULES` (its `schedules.py`), in INSTALLED_APPS order."""
    found: list[FixedSchedule] = []
    for config in apps.get_app_configs():
        if importlib.util.find_spec(f"{config.name}.schedules") is None:
            continue
        found.extend(importlib.import_module(f"{config.name}.schedules").SCHEDULES)
    names = [s.name for s in found]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"Two apps declare the beat entry {duplicated[0]!r}.")
    return tuple(found)


@dataclass(frozen=True, slots=True)
class ScheduleSync:
    created: tuple[str, ...]
    updated: tuple[str, ...]
    unchanged: tuple[str, ...]


def periodic_tasks_sync(*, schedules: tuple[FixedSchedule, ...] | None = None) -> ScheduleSync:
    """Each declared schedule has exactly one enabled beat entry: its crontab in BUSINESS_TIME_ZONE,
    or its interval.

    An entry already as wanted is not saved again, so beat sees no change and does not reload.
    """
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    from core.timezones import business_zone

    zone = business_zone()
    created, updated, unchanged = [], [], []
    with transaction.atomic():
        for schedule in declared_schedules() if schedules is None else schedules:
            crontab = interval = None
            if schedule.every_seconds is not None:
                interval, _ = IntervalSchedule.objects.get_or_create(
                    every=int(schedule.every_seconds), period=IntervalSchedule.SECONDS
                )
            else:
                crontab, _ = CrontabSchedule.objects.get_or_create(
                    minute=schedule.minute,
                    hour=schedule.hour,
                    day_of_week=schedule.day_of_week,
                    day_of_month=schedule.day_of_month,
                    month_of_year=schedule.month_of_year,
                    timezone=zone,
                )
            wanted = {
                "task": schedule.task,
                "crontab": crontab,
                "interval": interval,
                "solar": None,
                "clocked": None,
                "one_off": False,
                "enabled": True,
                "description": schedule.description,
            }
            entry = PeriodicTask.objects.select_for_update().filter(name=schedule.name).first()
            if entry is None:
                PeriodicTask.objects.create(name=schedule.name, **wanted)
                created.append(schedule.name)
                continue
            stale = {field: value for field, value in wanted.items() if getattr(entry, field) != value}
            if not stale:
                unchanged.append(schedule.name)
                continue
            for field, value in stale.items():
                setattr(entry, field, value)
            entry.save()
            updated.append(schedule.name)
    log.info("schedules.synced", created=created, updated=updated, unchanged=unchanged, zone=str(zone))
    return ScheduleSync(created=tuple(created), updated=tuple(updated), unchanged=tuple(unchanged))
