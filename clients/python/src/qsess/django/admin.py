"""Django admin for the qsess mirror: a read-only changelist whose actions revoke through Redis."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils import timezone

from .models import Session


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("live", "Live"), ("ended", "Ended"), ("expired", "Expired")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "live":
            return queryset.filter(ended_at__isnull=True, expires_at__gt=now)
        if self.value() == "ended":
            return queryset.filter(ended_at__isnull=False)
        if self.value() == "expired":
            return queryset.filter(ended_at__isnull=True, expires_at__lte=now)
        return queryset


@admin.action(description="Log out the selected sessions (revoke in Redis)", permissions=["delete"])
def revoke_sessions(modeladmin, request, queryset):
    live = queryset.filter(ended_at__isnull=True, user__isnull=False)
    skipped = queryset.filter(ended_at__isnull=True, user__isnull=True).count()
    ended, _ = live.delete()
    modeladmin.message_user(request, f"Logged out {ended} session(s).", messages.SUCCESS)
    if skipped:
        modeladmin.message_user(
            request,
            f"{skipped} anonymous session(s) skipped: qsess revokes by owner and handle.",
            messages.WARNING,
        )


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    list_display = [
        "handle",
        "user_id",
        "device",
        "location",
        "ip",
        "created_at",
        "last_seen",
        "expires_at",
        "ended_at",
        "end_reason",
    ]
    list_filter = [StatusFilter, "end_reason", "country"]
    search_fields = ["=handle", "ip", "device", "location"]
    ordering = ["-last_seen"]
    actions = [revoke_sessions]
    readonly_fields = [f.name for f in Session._meta.fields]
    exclude: list = []

    def get_search_results(self, request, queryset, search_term):
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if term:
            # The owner id is text in the mirror: match it exactly (no join to the user table).
            results = results | queryset.filter(user=term)
        return results, may_have_duplicates

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def get_actions(self, request):
        actions = super().get_actions(request)
        # The stock action would show a confirmation page then call delete_queryset; ours says
        # what it does (revoke) and does it at once.
        actions.pop("delete_selected", None)
        return actions

    def delete_queryset(self, request, queryset) -> None:
        queryset.filter(ended_at__isnull=True, user__isnull=False).delete()

    def delete_model(self, request, obj) -> None:
        obj.delete()
