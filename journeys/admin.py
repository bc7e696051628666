"""Admin: journey runs with their timelines, schedules (paused through their beat entry), approval
policies, and the finance approvers' "Waiting for approval" queue. Its Approve and Reject buttons
call journeys.engine.run_decide, the service behind the API, so they obey the same rules."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.serializers.json import DjangoJSONEncoder
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from core.actors import Actor
from core.errors import ApplicationError
from journeys import engine, selectors
from journeys.definition import APPROVAL_PANELS, Approval, all_journeys
from journeys.models import (
    ApprovalPolicy,
    JourneyApproval,
    JourneyChunk,
    JourneyRun,
    JourneySchedule,
    JourneyStep,
    JourneyTimer,
    PendingApproval,
    Phase,
    WaitKind,
)
from journeys.policies import policy_rows
from tenancy.admin_scoping import ReadOnlyAdminMixin, TenantScopedAdmin

# Journey name → its richer approval panel: apps register theirs in their own admin.py
# (journeys.public.register_approval_panel; invoicing does for the monthly batch).
approval_panels = APPROVAL_PANELS


def _summary(run: JourneyRun) -> dict[str, Any]:
    approval = selectors.active_approval(run)
    if approval is None or approval.summary is None:
        return {}
    return approval.summary(run.context) or {}


def _totals(totals: dict | None) -> str:
    return ", ".join(f"{currency} {amount}" for currency, amount in sorted((totals or {}).items())) or "—"


def _text(value: Any) -> str:
    """A summary value for a key/value table: nested values as compact JSON."""
    if isinstance(value, dict | list):
        return json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False)
    return "—" if value is None else str(value)


def _period(summary: dict[str, Any]) -> str:
    period = summary.get("billingPeriod")
    if isinstance(period, dict) and period.get("start"):
        return f"{period['start']} – {period.get('end', '')}"
    return summary.get("businessDate") or "—"


class _RunScopedAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    """History rows of a run: read-only, scoped by the run's tenant."""

    tenant_field = "run__tenant"
    list_select_related = ["run"]
    search_fields = ["run__journey_id"]


class _TimelineMixin:
    def _timeline_context(self, run: JourneyRun) -> dict[str, Any]:
        return {"timeline": selectors.run_timeline(run), "run": run}


@admin.register(JourneyRun)
class JourneyRunAdmin(_TimelineMixin, ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = [
        "journey_id",
        "journey_name",
        "tenant",
        "phase",
        "current_state",
        "waiting_for",
        "occurrence",
        "updated_at",
    ]
    list_filter = ["phase", "waiting_for", "journey_name", "tenant"]
    search_fields = ["journey_id", "subject_id"]
    list_select_related = ["tenant"]
    change_form_template = "admin/journeys/journeyrun/change_form.html"

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra = dict(extra_context or {})
        run = self.get_object(request, object_id)
        if run is not None:
            extra.update(self._timeline_context(run))
            # why a FAILED run failed, in words (the raw detail stays in the timeline's step entry)
            extra["run_error"] = selectors.run_error(run)
            if selectors.active_approval(run) is not None:
                extra["approval_url"] = reverse("admin:journeys_pendingapproval_change", args=[run.pk])
        return super().change_view(request, object_id, form_url, extra_context=extra)


class DecisionForm(forms.Form):
    # the step the page showed: a stale page never decides a later approval step of the same run
    step_id = forms.CharField(max_length=100, widget=forms.HiddenInput)
    decision = forms.ChoiceField(choices=JourneyApproval.Decision.choices)
    comment = forms.CharField(
        required=False, max_length=4000, widget=forms.Textarea(attrs={"rows": 3, "cols": 60})
    )


@admin.register(PendingApproval)
class PendingApprovalAdmin(_TimelineMixin, ReadOnlyAdminMixin, TenantScopedAdmin):
    """Runs paused on an approval step; opening one shows what is to be approved, and decides it."""

    list_display = [
        "run_link",
        "journey_name",
        "tenant",
        "step",
        "period",
        "invoice_count",
        "totals",
        "started_by",
        "waiting_since",
    ]
    list_filter = ["journey_name", "tenant"]
    search_fields = ["journey_id"]
    list_select_related = ["tenant", "started_by"]
    list_display_links = None

    def get_queryset(self, request):
        return super().get_queryset(request).filter(phase=Phase.RUNNING, waiting_for=WaitKind.APPROVAL)

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(
            request, {"title": "Runs waiting for approval", **(extra_context or {})}
        )

    @admin.display(description="run", ordering="journey_id")
    def run_link(self, run):
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:journeys_pendingapproval_change", args=[run.pk]),
            run.journey_id,
        )

    @admin.display(description="step")
    def step(self, run):
        approval = selectors.active_approval(run)
        return approval.step_id if approval else "—"

    @admin.display(description="period")
    def period(self, run):
        return _period(_summary(run))

    @admin.display(description="invoices")
    def invoice_count(self, run):
        count = _summary(run).get("invoiceCount")
        return "—" if count is None else count

    @admin.display(description="totals")
    def totals(self, run):
        return _totals(_summary(run).get("totalsByCurrency"))

    @admin.display(description="waiting since", ordering="updated_at")
    def waiting_since(self, run):
        return run.updated_at

    def get_urls(self):
        decide = path(
            "<path:object_id>/decide/",
            self.admin_site.admin_view(self.decide_view),
            name="journeys_pendingapproval_decide",
        )
        return [decide, *super().get_urls()]

    def _visible_run(self, request, object_id) -> JourneyRun:
        """The run if the user may see it, pending or not; 404 for another tenant's run."""
        if not self.has_view_permission(request):
            raise Http404
        # the tenant-scoped runs, not only the pending ones: a decided run says so instead of 404
        queryset = TenantScopedAdmin.get_queryset(self, request)
        run = queryset.filter(pk=object_id).first() if str(object_id).isdigit() else None
        if run is None:
            raise Http404("No such journey run.")
        return run

    def change_view(self, request, object_id, form_url="", extra_context=None):
        run = self._visible_run(request, object_id)
        approval = selectors.active_approval(run)
        if approval is None:
            messages.info(
                request,
                f"{run.journey_name} {run.journey_id} is not waiting for approval (it is at {run.current_state}).",
            )
            return HttpResponseRedirect(reverse("admin:journeys_journeyrun_change", args=[run.pk]))
        summary = _summary(run)
        context = {
            **self.admin_site.each_context(request),
            **self._timeline_context(run),
            "opts": self.model._meta,
            "title": f"Approve {run.journey_name} for {run.tenant}",
            "subtitle": run.journey_id,
            "approval": approval,
            "policy_rows": policy_rows(tenant_id=run.tenant_id, journey_name=run.journey_name, state=approval),
            "summary": summary,
            "summary_items": [(key, _text(value)) for key, value in summary.items()],
            "totals": _totals(summary.get("totalsByCurrency")),
            "period": _period(summary),
            "form": DecisionForm(initial={"step_id": approval.step_id}),
            "decide_url": reverse("admin:journeys_pendingapproval_decide", args=[run.pk]),
            "run_url": reverse("admin:journeys_journeyrun_change", args=[run.pk]),
            "panel_template": None,
        }
        panel = approval_panels.get(run.journey_name)
        if panel is not None:
            template, panel_context = panel(request, run)
            context.update(panel_context, panel_template=template)
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/journeys/pendingapproval/approve.html", context)

    def decide_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        run = self._visible_run(request, object_id)
        back = reverse("admin:journeys_pendingapproval_change", args=[run.pk])
        form = DecisionForm(request.POST)
        if not form.is_valid():
            errors = "; ".join(f"{field}: {' '.join(errs)}" for field, errs in form.errors.items())
            messages.error(request, f"Nothing was decided: {errors}")
            return HttpResponseRedirect(back)
        data = form.cleaned_data
        try:
            run = engine.run_decide(
                run=run,
                step_id=data["step_id"],
                decision=data["decision"],
                comment=data["comment"],
                user=request.user,
                actor=Actor.for_user(request.user),
            )
        except ApplicationError as exc:
            messages.error(request, f"Nothing was decided: {exc.detail}")
            return HttpResponseRedirect(back)
        verb = "Approved" if data["decision"] == JourneyApproval.Decision.APPROVED else "Rejected"
        messages.success(
            request,
            format_html(
                '{}: {} <a href="{}">{}</a> moves on to {}.',
                verb,
                run.journey_name,
                reverse("admin:journeys_journeyrun_change", args=[run.pk]),
                run.journey_id,
                run.current_state,
            ),
        )
        return HttpResponseRedirect(reverse("admin:journeys_pendingapproval_changelist"))


@admin.register(JourneyStep)
class JourneyStepAdmin(_RunScopedAdmin):
    list_display = ["run", "state", "attempt", "started_at", "finished_at", "outcome"]
    list_filter = ["outcome", "run__journey_name"]


@admin.register(JourneyTimer)
class JourneyTimerAdmin(_RunScopedAdmin):
    list_display = ["run", "state", "due_at", "fired_at", "cancelled_at", "created_at"]
    list_filter = ["run__journey_name"]


@admin.register(JourneyChunk)
class JourneyChunkAdmin(_RunScopedAdmin):
    """A Map state's chunks: what each worked on, its outcome, and the error of a failed one."""

    list_display = ["run", "state", "index", "status", "attempt", "dispatched_at", "finished_at"]
    list_filter = ["status", "run__journey_name"]


@admin.register(JourneyApproval)
class JourneyApprovalAdmin(_RunScopedAdmin):
    list_display = ["run", "step_id", "decision", "decided_by", "decided_at", "comment"]
    list_filter = ["decision", "run__journey_name"]
    list_select_related = ["run", "decided_by"]


@admin.register(JourneySchedule)
class JourneyScheduleAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    """Read-only: the API or `manage.py journey start` configure; operators pause the beat entry."""

    list_display = [
        "journey_name",
        "key",
        "tenant",
        "interval",
        "first_run_at",
        "max_runs",
        "next_occurrence",
        "beat_entry",
    ]
    list_filter = ["journey_name", "tenant"]
    list_select_related = ["tenant", "periodic_task"]
    readonly_fields = ["beat_entry"]

    @admin.display(description="beat entry (pause here)")
    def beat_entry(self, schedule):
        task = schedule.periodic_task
        if task is None:
            return "—"
        return format_html(
            '<a href="{}">{}</a> ({})',
            reverse("admin:django_celery_beat_periodictask_change", args=[task.pk]),
            task.name,
            "enabled" if task.enabled else "paused",
        )


class ApprovalPolicyForm(forms.ModelForm):
    journey_name = forms.ChoiceField()

    class Meta:
        model = ApprovalPolicy
        fields = ["tenant", "journey_name", "mode", "threshold_amount", "threshold_currency"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # only journeys that have an approval step can have a policy for it
        names = sorted(
            name for name, j in all_journeys().items() if any(isinstance(s, Approval) for s in j.states)
        )
        self.fields["journey_name"].choices = [(name, name) for name in names]


@admin.register(ApprovalPolicy)
class ApprovalPolicyAdmin(TenantScopedAdmin):
    form = ApprovalPolicyForm
    change_permission = delete_permission = "settings.manage"
    list_display = ["journey_name", "tenant", "mode", "threshold_amount", "threshold_currency"]
    list_filter = ["journey_name", "mode", "tenant"]
