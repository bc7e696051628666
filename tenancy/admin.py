"""Admin of the ground floor: tenants and who is in them with which roles."""

from django import forms
from django.contrib import admin, messages

from core.actors import Actor
from core.errors import ApplicationError
from core.models import IdempotencyKey
from tenancy import roles, services
from tenancy.admin_scoping import ReadOnlyAdminMixin, TenantScopedAdmin, user_tenants
from tenancy.models import Membership, Tenant


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    """A tenant's own row: its tenant-admins change it; only the platform's superusers add or delete."""

    list_display = ["name", "slug", "default_currency", "invoice_number_prefix", "payment_terms_days"]
    prepopulated_fields = {"slug": ["name"]}

    def get_queryset(self, request):
        return user_tenants(request.user)

    def has_module_permission(self, request):
        return request.user.is_superuser or roles.tenants_where(request.user, roles.SETTINGS_MANAGE).exists()

    def has_view_permission(self, request, obj=None):
        return self.has_change_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        if obj is None:
            return self.has_module_permission(request)
        return roles.may(request.user, obj.pk, roles.SETTINGS_MANAGE) and (request.user.is_staff or request.user.is_superuser)

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser


class MembershipForm(forms.ModelForm):
    roles = forms.MultipleChoiceField(choices=roles.Role.choices, widget=forms.CheckboxSelectMultiple, required=False)

    class Meta:
        model = Membership
        fields = ["tenant", "user", "roles"]


@admin.register(Membership)
class MembershipAdmin(TenantScopedAdmin):
    """Who is in the tenant with which roles; saving goes through the membership services."""

    form = MembershipForm
    list_display = ["user", "tenant", "roles", "created_at"]
    list_filter = ["tenant"]
    view_permission = change_permission = delete_permission = roles.MEMBERSHIPS_MANAGE

    def get_readonly_fields(self, request, obj=None):
        return ["tenant", "user"] if obj is not None else []

    def save_model(self, request, obj, form, change):
        actor = Actor.for_user(request.user)
        wanted = set(form.cleaned_data["roles"])
        if not change:
            created = services.membership_create(
                tenant=form.cleaned_data["tenant"], user=form.cleaned_data["user"], roles=wanted, actor=actor
            )
            obj.pk = created.pk
            return
        current = Membership.objects.get(pk=obj.pk)
        try:
            for role in sorted(wanted - set(current.roles)):
                services.membership_grant_role(membership=current, role=role, actor=actor)
            for role in sorted(set(current.roles) - wanted):
                services.membership_revoke_role(membership=current, role=role, actor=actor)
        except ApplicationError as exc:
            self.message_user(request, exc.detail, messages.ERROR)

    def delete_model(self, request, obj):
        try:
            services.membership_remove(membership=obj, actor=Actor.for_user(request.user))
        except ApplicationError as exc:
            self.message_user(request, exc.detail, messages.ERROR)

    def delete_queryset(self, request, queryset):
        for membership in self.permitted(request, queryset, roles.MEMBERSHIPS_MANAGE):
            self.delete_model(request, membership)


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    """Stored answers to retried API creates (core.idempotency), per tenant."""

    list_display = ["key", "tenant", "method", "path", "response_status", "created_at"]
    search_fields = ["key"]
