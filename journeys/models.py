"""Journey runs and what they wait on. PostgreSQL is the source of truth; Redis only carries messages."""

import secrets
import string

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import F, Q

_BASE64URL = string.ascii_letters + string.digits + "-_"


def new_journey_id() -> str:
    """22 opaque base64url characters carrying ~132 random bits (≥ 128).

    The first is never '-', so an id can be passed to `manage.py journey …` without being taken
    for an option.
    """
    first = secrets.choice(_BASE64URL.replace("-", ""))
    return first + "".join(secrets.choice(_BASE64URL) for _ in range(21))


class Phase(models.TextChoices):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class WaitKind(models.TextChoices):
    """What a running journey is waiting for at its current state."""

    TASK = "task"  # a step task is queued or running
    APPROVAL = "approval"  # a person's decision
    TIMER = "timer"  # a durable timer row
    MAP = "map"  # a Map state's chunks are working (JourneyChunk rows)
    NONE = "none"  # terminal


class JourneyRun(models.Model):
    journey_id = models.CharField(max_length=32, unique=True, default=new_journey_id, editable=False)
    journey_name = models.CharField(max_length=100)
    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.PROTECT, related_name="journey_runs")
    subject_id = models.CharField(max_length=200, blank=True)
    phase = models.CharField(max_length=16, choices=Phase.choices, default=Phase.RUNNING)
    current_state = models.CharField(max_length=100)
    waiting_for = models.CharField(max_length=16, choices=WaitKind.choices, default=WaitKind.TASK)
    context = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    output = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    error = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    # The configuration run a scheduled run was started from.
    parent = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="scheduled_runs")
    schedule = models.ForeignKey("JourneySchedule", on_delete=models.PROTECT, null=True, blank=True, related_name="runs")
    occurrence = models.PositiveIntegerField(null=True, blank=True)
    # Makes "start this journey for this tenant and this key" happen once: an occurrence of a
    # schedule, a business date of a daily run. Two beats or a retry find the existing run.
    dedupe_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001 - unique when set
    # Who started it (the preparer): they may not approve it.
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # A worker holding the current step until then; a lapsed lease lets recovery hand it on.
    lease_until = models.DateTimeField(null=True, blank=True)
    # When the current step's task was last enqueued: recovery re-enqueues a step lost in transit.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    attempt = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        permissions = [("approve_run", "Can approve or reject a journey's approval step")]
        constraints = [
            models.UniqueConstraint(
                fields=["journey_name", "tenant", "dedupe_key"],
                condition=Q(dedupe_key__isnull=False),
                name="journey_run_unique_dedupe_key",
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "journey_name", "phase"], name="journey_run_list_idx"),
            models.Index(fields=["phase", "waiting_for", "dispatched_at"], name="journey_run_recovery_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.journey_name} {self.journey_id} [{self.phase} @ {self.current_state}]"


class JourneyStep(models.Model):
    """One attempt of one step: the run's history and its timeline in the admin."""

    run = models.ForeignKey(JourneyRun, on_delete=models.CASCADE, related_name="steps")
    state = models.CharField(max_length=100)
    attempt = models.PositiveSmallIntegerField(default=1)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    # the route taken ("ok", "APPROVED" …) or "error"
    outcome = models.CharField(max_length=100, blank=True)
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["run_id", "id"]

    def __str__(self) -> str:
        return f"{self.state} → {self.outcome}"


class JourneyTimer(models.Model):
    """A durable pause: the beat task `journeys.fire_due_timers` resumes the run once due_at passed."""

    run = models.ForeignKey(JourneyRun, on_delete=models.CASCADE, related_name="timers")
    state = models.CharField(max_length=100)
    due_at = models.DateTimeField()
    fired_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["due_at", "id"]
        constraints = [models.UniqueConstraint(fields=["run", "state"], name="journey_timer_unique_per_state")]
        indexes = [
            models.Index(
                fields=["due_at"], condition=Q(fired_at__isnull=True, cancelled_at__isnull=True), name="journey_timer_due_idx"
            )
        ]

    def __str__(self) -> str:
        return f"{self.state} due {self.due_at:%Y-%m-%d %H:%M}"


class JourneyChunk(models.Model):
    """One chunk of a Map state's input and its outcome. The kernel owns these rows: the run moves
    on once none of its state's chunks is pending or running."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"  # failed on every attempt

    run = models.ForeignKey(JourneyRun, on_delete=models.CASCADE, related_name="chunks")
    state = models.CharField(max_length=100)
    index = models.PositiveIntegerField()
    items = models.JSONField(default=list, encoder=DjangoJSONEncoder)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempt = models.PositiveSmallIntegerField(default=0)
    # When its task was last enqueued; None: it waits for a slot under the state's concurrency limit.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    # A failed attempt's chunk runs again no earlier than this (backoff).
    due_at = models.DateTimeField(null=True, blank=True)
    # A worker running the chunk holds it until then; a lapsed lease lets recovery hand it on.
    lease_until = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    # What the chunk's function returned (JSON), for the state's fan-in.
    result = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run_id", "state", "index"]
        constraints = [models.UniqueConstraint(fields=["run", "state", "index"], name="journey_chunk_unique_index")]
        indexes = [
            models.Index(fields=["run", "state", "status"], name="journey_chunk_state_idx"),
            models.Index(
                fields=["status", "dispatched_at"],
                condition=Q(status__in=["pending", "running"]),
                name="journey_chunk_recovery_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.state}[{self.index}] {self.status}"


class JourneyApproval(models.Model):
    """A decision on an approval step. One per step; the approver is never the preparer."""

    class Decision(models.TextChoices):
        APPROVED = "APPROVED"
        REJECTED = "REJECTED"

    run = models.ForeignKey(JourneyRun, on_delete=models.PROTECT, related_name="approvals")
    step_id = models.CharField(max_length=100)
    decision = models.CharField(max_length=16, choices=Decision.choices)
    comment = models.TextField(blank=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    # Copied from the run so the database itself can refuse a preparer's approval.
    preparer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    decided_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "step_id"], name="journey_approval_one_per_step"),
            models.CheckConstraint(
                condition=Q(preparer__isnull=True) | ~Q(decided_by=F("preparer")),
                name="journey_approval_not_by_preparer",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.step_id}: {self.decision}"


class JourneySchedule(models.Model):
    """A journey bound to a schedule: occurrence k starts at first_run_at + k × interval."""

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.PROTECT, related_name="journey_schedules")
    journey_name = models.CharField(max_length=100)
    key = models.CharField(max_length=200)
    first_run_at = models.DateTimeField()
    interval = models.CharField(max_length=64)
    max_runs = models.PositiveIntegerField()
    # The configuration a scheduled run starts with (the start request's body).
    context = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    config_run = models.OneToOneField(JourneyRun, on_delete=models.PROTECT, related_name="configured_schedule")
    # The next occurrence index not yet started.
    next_occurrence = models.PositiveIntegerField(default=0)
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    # The django-celery-beat entry that ticks this schedule; operators pause it in the admin.
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "journey_name", "key"], name="journey_schedule_unique_key"),
            models.CheckConstraint(condition=Q(max_runs__gte=1), name="journey_schedule_max_runs_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.journey_name}/{self.key} every {self.interval}"


class ApprovalPolicy(models.Model):
    """Per tenant and journey: when a run must wait for a finance approver."""

    class Mode(models.TextChoices):
        ALWAYS = "always"
        NEVER = "never"
        ABOVE_THRESHOLD = "above_threshold"

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="approval_policies")
    journey_name = models.CharField(max_length=100)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.ALWAYS)
    # With above_threshold: a run whose total in `threshold_currency` exceeds this waits for approval;
    # a run with amounts in any other currency always waits (no conversion is guessed).
    threshold_amount = models.DecimalField(max_digits=22, decimal_places=4, null=True, blank=True)
    threshold_currency = models.CharField(max_length=3, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "journey_name"], name="approval_policy_unique"),
            models.CheckConstraint(
                condition=~Q(mode="above_threshold") | Q(threshold_amount__isnull=False, threshold_amount__gte=0),
                name="approval_policy_threshold_set",
            ),
        ]
        verbose_name_plural = "approval policies"

    def __str__(self) -> str:
        return f"{self.journey_name}: {self.mode}"


class PendingApproval(JourneyRun):
    """The admin's "Waiting for approval" queue: running journeys paused on an approval step."""

    class Meta:
        proxy = True
        verbose_name = "run waiting for approval"
        verbose_name_plural = "waiting for approval"
