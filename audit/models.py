from django.db import models
from django.db.models.functions import Now


class Event(models.Model):
    """One change to money or to a status. Written by database triggers, never updated or deleted."""

    class Action(models.TextChoices):
        CREATED = "created"
        UPDATED = "updated"
        DELETED = "deleted"

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.PROTECT, related_name="+")
    occurred_at = models.DateTimeField(db_default=Now(), db_index=True)
    # user, token, task or system; "system/unattributed" means a change made outside audited().
    actor_type = models.CharField(max_length=16)
    actor_id = models.CharField(max_length=64, blank=True)
    actor_label = models.CharField(max_length=200, blank=True)
    action = models.CharField(max_length=16, choices=Action.choices)
    object_type = models.CharField(max_length=64)
    object_id = models.BigIntegerField()
    old_values = models.JSONField(null=True)
    new_values = models.JSONField(null=True)
    reason = models.TextField(blank=True)

    class Meta:
        db_table = "audit_event"
        ordering = ["-occurred_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "object_type", "object_id"], name="audit_event_object_idx"),
            models.Index(fields=["tenant", "actor_type", "actor_id"], name="audit_event_actor_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.object_type}#{self.object_id} {self.action} by {self.actor_type}:{self.actor_label}"
