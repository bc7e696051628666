"""Tenant-admin API of tenancy: who is in the tenant with which roles."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.actors import Actor
from core.api.serializers import StrictSerializer
from core.api.views import validated
from core.errors import NotFound, ValidationFailed
from tenancy import services
from tenancy.models import Membership
from tenancy.roles import MEMBERSHIPS_MANAGE, Role, permissions_of


class MembershipSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)
    permissions = serializers.SerializerMethodField()

    class Meta:
        model = Membership
        fields = ["id", "username", "roles", "permissions", "created_at"]
        read_only_fields = fields

    def get_permissions(self, membership) -> list[str]:
        return sorted(permissions_of(membership.roles))


class MembershipCreateSerializer(StrictSerializer):
    username = serializers.CharField(max_length=150)
    roles = serializers.ListField(child=serializers.ChoiceField(choices=Role.choices), allow_empty=True, default=list)


class RoleSerializer(StrictSerializer):
    role = serializers.ChoiceField(choices=Role.choices)


def _membership(request, membership_id) -> Membership:
    found = Membership.objects.select_related("user").filter(tenant=request.tenant, pk=membership_id).first()
    if found is None:
        raise NotFound("No such membership.")
    return found


class MembershipListView(APIView):
    required_permissions = MEMBERSHIPS_MANAGE

    @extend_schema(operation_id="memberships_list", responses={200: MembershipSerializer(many=True)})
    def get(self, request):
        rows = Membership.objects.select_related("user").filter(tenant=request.tenant).order_by("id")
        return Response(MembershipSerializer(rows, many=True).data)

    @extend_schema(operation_id="memberships_create", request=MembershipCreateSerializer, responses={201: MembershipSerializer})
    def post(self, request):
        """Put an existing user in the tenant with roles (an existing membership gains them)."""
        body = validated(MembershipCreateSerializer, request)
        user = get_user_model().objects.filter(username=body["username"], is_active=True).first()
        if user is None:
            raise ValidationFailed("No active user has this username.", field="username")
        membership = services.membership_create(
            tenant=request.tenant, user=user, roles=body["roles"], actor=Actor.for_request(request)
        )
        return Response(MembershipSerializer(membership).data, status=status.HTTP_201_CREATED)


class MembershipRolesView(APIView):
    required_permissions = MEMBERSHIPS_MANAGE

    @extend_schema(operation_id="memberships_grant_role", request=RoleSerializer, responses={200: MembershipSerializer})
    def post(self, request, membership_id: int):
        body = validated(RoleSerializer, request)
        membership = services.membership_grant_role(
            membership=_membership(request, membership_id), role=body["role"], actor=Actor.for_request(request)
        )
        return Response(MembershipSerializer(membership).data)


class MembershipRoleView(APIView):
    required_permissions = MEMBERSHIPS_MANAGE

    @extend_schema(operation_id="memberships_revoke_role", responses={200: MembershipSerializer})
    def delete(self, request, membership_id: int, role: str):
        """Take a role away; the tenant's last tenant-admin keeps it (409 last-tenant-admin)."""
        membership = services.membership_revoke_role(
            membership=_membership(request, membership_id), role=role, actor=Actor.for_request(request)
        )
        return Response(MembershipSerializer(membership).data)
