"""GET /api/v1/events: the tenant's audit trail, newest first."""

import django_filters
from rest_framework import mixins, serializers

from audit.models import Event
from core.api.filters import UTCIsoDateTimeFilter
from core.api.views import TenantScopedViewSet


class EventSerializer(serializers.ModelSerializer):
    class Meta:
        model = Event
        fields = [
            "id",
            "occurred_at",
            "actor_type",
            "actor_id",
            "actor_label",
            "action",
            "object_type",
            "object_id",
            "old_values",
            "new_values",
            "reason",
        ]
        read_only_fields = fields


class EventFilter(django_filters.FilterSet):
    objectType = django_filters.CharFilter(field_name="object_type")  # noqa: N815
    objectId = django_filters.NumberFilter(field_name="object_id")  # noqa: N815
    actorType = django_filters.CharFilter(field_name="actor_type")  # noqa: N815
    actorId = django_filters.CharFilter(field_name="actor_id")  # noqa: N815
    occurredFrom = UTCIsoDateTimeFilter(field_name="occurred_at", lookup_expr="gte")  # noqa: N815
    occurredTo = UTCIsoDateTimeFilter(field_name="occurred_at", lookup_expr="lt")  # noqa: N815

    class Meta:
        model = Event
        fields = []


class EventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    required_permissions = "audit.view"
    queryset = Event.objects.all()
    serializer_class = EventSerializer
    filterset_class = EventFilter
