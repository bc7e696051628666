from django.urls import path

from tenancy import apis

urlpatterns = [
    path("memberships", apis.MembershipListView.as_view(), name="membership-list"),
    path("memberships/<int:membership_id>/roles", apis.MembershipRolesView.as_view(), name="membership-roles"),
    path(
        "memberships/<int:membership_id>/roles/<str:role>", apis.MembershipRoleView.as_view(), name="membership-role"
    ),
]
