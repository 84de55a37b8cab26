"""Django app config: `INSTALLED_APPS += ["qsess.django"]` for the mirror models, admin and import command."""

from __future__ import annotations

from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import pre_delete


def _revoke_deleted_user(sender, instance, **kwargs) -> None:
    # Deleting a user must log them out everywhere; the mirror rows follow from Redis.
    from . import conf

    conf.client().revoke_user(str(instance.pk))


class QsessConfig(AppConfig):
    name = "qsess.django"
    label = "qsess"
    verbose_name = "qsess sessions"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        pre_delete.connect(
            _revoke_deleted_user,
            sender=settings.AUTH_USER_MODEL,
            dispatch_uid="qsess.revoke_deleted_user",
        )
