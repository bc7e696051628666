"""View building blocks: body validation, tenant scoping and idempotent creates."""

from __future__ import annotations

from rest_framework import mixins, status, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from core.actors import Actor
from core.idempotency import run_idempotently

IDEMPOTENCY_HEADER = "Idempotency-Key"


class TenantScopedViewSet(viewsets.GenericViewSet):
    """Every queryset is the caller's tenant's: another tenant's object is simply not found (404)."""

    def get_queryset(self):
        return super().get_queryset().filter(tenant=self.request.tenant)

    @property
    def actor(self) -> Actor:
        return Actor.for_request(self.request)


def validated(serializer_class, request, *, context: dict | None = None) -> dict:
    """The request body's data as `serializer_class` validates it; a bad body raises (a 400 problem
    naming the field) before any service runs."""
    body = serializer_class(data=request.data, context=context or {})
    body.is_valid(raise_exception=True)
    return body.validated_data


class IdempotentCreateMixin(mixins.CreateModelMixin):
    """POST creating a money record. With an Idempotency-Key, a retry of the same request gets
    the first response again and creates nothing; the same key with another body answers 422."""

    def create(self, request, *args, **kwargs):
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if key is None:
            return Response(self._create(request), status=status.HTTP_201_CREATED)
        stored = run_idempotently(
            tenant=request.tenant,
            key=key,
            method=request.method,
            path=request.path,
            body=request.data,
            create=lambda: (status.HTTP_201_CREATED, self._create(request)),
        )
        response = Response(stored.body, status=stored.status)
        response["Idempotent-Replayed"] = "true" if stored.replayed else "false"
        return response

    def _create(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        instance = self.perform_create_service(serializer.validated_data)
        return self.get_serializer(instance).data

    def perform_create_service(self, data):  # pragma: no cover - each view says which service
        raise NotImplementedError


class TenantSettingsView(APIView):
    """GET and PATCH of one settings object of the caller's tenant, for its tenant-admins.

    A subclass names its serializer and says how to read the settings and how to save the fields a
    PATCH sends (a service, audited); the answer to both is the settings as they now are. Each
    subclass documents its operations with `extend_schema_view`.
    """

    required_permissions = "settings.manage"
    serializer_class = None

    def read(self, tenant):  # pragma: no cover - each view says how
        raise NotImplementedError

    def write(self, *, tenant, actor: Actor, **fields):  # pragma: no cover - each view says which service
        raise NotImplementedError

    def get(self, request):
        return Response(self.serializer_class(self.read(request.tenant)).data)

    def patch(self, request):
        fields = validated(self.serializer_class, request)
        saved = self.write(tenant=request.tenant, actor=Actor.for_request(request), **fields)
        return Response(self.serializer_class(saved).data)
