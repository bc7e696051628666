"""`manage.py journey start|status|approve|cancel`: the journeys API's verbs for operators.

Thin, and knows no journey: `start <journey>` hands its options to the journey's own `configure`
hook (the monthly batch's calls the same service as POST …/monthly-invoicing-batch/start),
`approve` calls engine.run_decide (so the approver rules are the API's), `cancel` engine.run_cancel,
`status` reads selectors. `--follow` polls the run record, which is the truth, until the run pauses
(approval or timer) or ends; a journey's `progress` hook adds its own bars.
"""

from __future__ import annotations

import json
import sys
import time

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone
from tqdm import tqdm

from core.actors import Actor
from core.errors import ApplicationError
from journeys import engine, scheduling, selectors
from journeys.definition import all_journeys, get_journey
from journeys.models import JourneyApproval, JourneyRun, JourneySchedule, Phase, WaitKind

# How often --follow re-reads the run: each read is two or three small indexed queries.
POLL_SECONDS = 0.5
# Rates (steps/s) say nothing about a run that waits on people and timers: counts and time only.
_BAR_FORMAT = "{desc}: {n_fmt}/{total_fmt} |{bar}| {elapsed}{postfix}"
# Step outcomes that do not move a run forward on its path.
_NOT_PROGRESS = ("error", "cancelled")


class Command(BaseCommand):
    help = "Start (configure) a journey, show a journey's status, approve or cancel it."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="{start,status,approve,cancel}")

        start = actions.add_parser(
            "start", help="start or configure a journey (its own options follow its name)"
        )
        journeys = start.add_subparsers(dest="journey_name", required=True, metavar="JOURNEY")
        for name, journey in sorted(all_journeys().items()):
            if journey.configure is None:
                continue
            one = journeys.add_parser(name, help=journey.configure.help)
            one.add_argument("--tenant", required=True, help="tenant slug")
            one.add_argument("--user", help="who starts it: the preparer, who may not approve its runs")
            journey.configure.add_arguments(one)
            self._follow_options(one)

        status = actions.add_parser("status", help="print a journey's status")
        status.add_argument("journey_id")
        status.add_argument("--json", action="store_true", help="the API's JourneyStatus document")
        self._follow_options(status)

        approve = actions.add_parser("approve", help="decide the approval step a journey waits on")
        approve.add_argument("journey_id")
        approve.add_argument(
            "--user", required=True, help="the approver (finance-approver in the run's tenant)"
        )
        approve.add_argument("--reject", action="store_true", help="reject instead of approve")
        approve.add_argument("--comment", default="")

        cancel = actions.add_parser("cancel", help="stop a running journey (FAILED, JOURNEY_CANCELLED)")
        cancel.add_argument("journey_id")
        cancel.add_argument("--reason", default="")
        cancel.add_argument("--user", help="who cancels (for the audit trail)")

    @staticmethod
    def _follow_options(parser):
        parser.add_argument(
            "--follow", action="store_true", help="show progress until the run pauses or ends"
        )
        parser.add_argument("--timeout", type=float, help="stop following after this many seconds (exit 1)")

    def handle(self, *args, **options):
        # progress bars go to stderr, the tool's results to stdout
        self.bar_stream = options.get("stderr") or sys.stderr
        try:
            getattr(self, f"handle_{options['action']}")(options)
        except ApplicationError as exc:
            raise CommandError(exc.detail) from None

    # --- start -----------------------------------------------------------------------------------
    def handle_start(self, options):
        journey = get_journey(options["journey_name"])
        tenant_model = JourneyRun._meta.get_field("tenant").related_model
        tenant = tenant_model.objects.filter(slug=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"No tenant {options['tenant']!r}.")
        user = _user(options["user"]) if options["user"] else None
        actor = Actor.for_user(user) if user else Actor.system("manage.py journey")
        started, message = journey.configure.start(tenant=tenant, options=options, user=user, actor=actor)
        self.stdout.write(message)
        if not options["follow"]:
            return
        if isinstance(started, JourneySchedule):
            run = self._scheduled_run(started, actor)
            if run is None:
                return
        else:
            run = started
        self._follow(run, options["timeout"])

    def _scheduled_run(self, schedule: JourneySchedule, actor: Actor) -> JourneyRun | None:
        """The schedule's latest run, after starting what beat's next tick would start."""
        if schedule.first_run_at > timezone.now() and not schedule.runs.exists():
            self.stdout.write(f"Nothing to follow yet: the first run starts at {_local(schedule)}.")
            return None
        # each occurrence starts once, so racing beat is harmless
        scheduling.schedule_fire(schedule_id=schedule.pk, actor=actor)
        run = schedule.runs.order_by("-occurrence").first()
        if run is None:
            self.stdout.write("Nothing to follow: the schedule is paused or has run max-runs times.")
            return None
        self.stdout.write(f"Following run {run.journey_id} (occurrence {run.occurrence}).")
        return run

    # --- status ----------------------------------------------------------------------------------
    def handle_status(self, options):
        run = _run(options["journey_id"])
        if options["json"]:
            self.stdout.write(json.dumps(selectors.run_status(run), cls=DjangoJSONEncoder, indent=2))
        else:
            self._print_status(run)
        if options["follow"]:
            self._follow(run, options["timeout"])

    def _print_status(self, run: JourneyRun) -> None:
        status = selectors.run_status(run)
        lines = [
            f"journey   {run.journey_name} {run.journey_id}",
            f"tenant    {run.tenant.slug}",
            f"phase     {run.phase} at {run.current_state} (waiting for {run.waiting_for})",
        ]
        approval = selectors.active_approval(run)
        if approval is not None:
            lines.append(
                f"decide    step {approval.step_id}: manage.py journey approve {run.journey_id} --user USERNAME [--reject]"
            )
        for key, value in (status.get("approvalSummary") or {}).items():
            lines.append(f"  {key}: {_text(value)}")
        if run.error:
            lines.append(f"error     {run.error.get('code')}: {run.error.get('reason')}")
        if status.get("lastRun"):
            lines.append(f"lastRun   {_text(status['lastRun'])}")
        self.stdout.write("\n".join(lines))

    # --- approve / cancel ------------------------------------------------------------------------
    def handle_approve(self, options):
        run = _run(options["journey_id"])
        user = _user(options["user"])
        approval = selectors.active_approval(run)
        if approval is None:
            raise CommandError(
                f"Journey {run.journey_id} is not waiting for a decision ({run.phase} at {run.current_state})."
            )
        decision = (
            JourneyApproval.Decision.REJECTED if options["reject"] else JourneyApproval.Decision.APPROVED
        )
        run = engine.run_decide(
            run=run,
            step_id=approval.step_id,
            decision=decision,
            comment=options["comment"],
            user=user,
            actor=Actor.for_user(user),
        )
        self.stdout.write(
            f"{decision.label}: {approval.step_id} of {run.journey_name} {run.journey_id}; it moves on to {run.current_state}."
        )

    def handle_cancel(self, options):
        run = _run(options["journey_id"])
        if run.phase != Phase.RUNNING:
            self.stdout.write(f"Journey {run.journey_id} already ended: {run.phase}.")
            return
        actor = (
            Actor.for_user(_user(options["user"])) if options["user"] else Actor.system("manage.py journey")
        )
        run = engine.run_cancel(
            run=run, actor=actor, reason=options["reason"] or "cancelled with manage.py journey"
        )
        self.stdout.write(f"Cancelled {run.journey_name} {run.journey_id} at {run.current_state}.")

    # --- following -------------------------------------------------------------------------------
    def _follow(self, run: JourneyRun, timeout: float | None) -> None:
        """Bars of the run's steps (against its happy path) and of its invoices sent, until it pauses or ends."""
        path = selectors.happy_path(run.journey_name)
        steps = tqdm(
            total=len(path), desc="steps", file=self.bar_stream, bar_format=_BAR_FORMAT, dynamic_ncols=True
        )
        journey = get_journey(run.journey_name)
        progress = journey.progress if journey is not None else None
        bars: dict[str, tqdm] = {}
        deadline = time.monotonic() + timeout if timeout is not None else None
        try:
            while True:
                run.refresh_from_db()
                steps.n = _steps_done(run, path)
                steps.set_postfix_str(run.current_state, refresh=False)
                steps.refresh()
                for label, done, total in progress(run) if progress is not None else ():
                    if not total:
                        continue
                    if label not in bars:
                        bars[label] = tqdm(
                            total=total,
                            desc=label,
                            file=self.bar_stream,
                            bar_format=_BAR_FORMAT,
                            dynamic_ncols=True,
                        )
                    bars[label].total, bars[label].n = total, done
                    bars[label].refresh()
                if run.phase != Phase.RUNNING or run.waiting_for in (WaitKind.APPROVAL, WaitKind.TIMER):
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise CommandError(
                        f"Still at {run.current_state} after {timeout:g}s; the run goes on without us."
                    )
                time.sleep(POLL_SECONDS)
        except KeyboardInterrupt:
            self.stdout.write("Stopped following; the run goes on.")
            return
        finally:
            steps.close()
            for bar in bars.values():
                bar.close()
        if run.phase == Phase.RUNNING:
            self.stdout.write(f"Paused at {run.current_state}, waiting for {run.waiting_for}.")
        else:
            detail = (run.output or {}).get("status") or (run.error or {}).get("code") or ""
            self.stdout.write(f"Ended {run.phase} {detail}".rstrip() + ".")


def _steps_done(run: JourneyRun, path: list[str]) -> int:
    """How many states of the happy path the run has completed (a retried step counts once)."""
    done = set(run.steps.exclude(outcome__in=_NOT_PROGRESS).values_list("state", flat=True))
    return len(done.intersection(path))


def _run(journey_id: str) -> JourneyRun:
    run = JourneyRun.objects.select_related("tenant").filter(journey_id=journey_id).first()
    if run is None:
        raise CommandError(f"No journey with id {journey_id!r}.")
    return run


def _user(username: str):
    model = get_user_model()
    user = model._default_manager.filter(**{model.USERNAME_FIELD: username}).first()
    if user is None:
        raise CommandError(f"No user {username!r}.")
    return user


def _local(schedule: JourneySchedule) -> str:
    """The schedule's first run as it was given (its configuration's firstRunAt)."""
    return (schedule.context or {}).get("firstRunAt") or schedule.first_run_at.isoformat()


def _text(value) -> str:
    return (
        json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False)
        if isinstance(value, dict | list)
        else str(value)
    )
