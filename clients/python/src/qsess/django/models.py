"""Read-only Django models over the qsess-syncd mirror (`qsess.sessions`, `qsess.live_sessions`).

The tables belong to qsess-syncd (`managed = False`): Django never creates, alters or writes them.
Deleting through these models revokes in Redis (`QSESS.REVOKE`); the mirror then records the end
within milliseconds. Deleting rows by SQL alone would not log anyone out, so it is never done.

The mirror's `user_id` is text (qsess owners are strings), so `user` is a foreign key whose lookups
compare as text: `Session.objects.filter(user=request.user)` works. Joins to the user table
(`user__username=...`) do not, since PostgreSQL will not compare text with an integer key.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models.fields.related_descriptors import ForwardManyToOneDescriptor
from django.db.models.fields.related_lookups import RelatedExact, RelatedIn

from . import conf


class _TextExact(RelatedExact):
    def get_db_prep_lookup(self, value, connection):
        return ("%s", [None if value is None else str(value)])


class _TextIn(RelatedIn):
    def get_db_prep_lookup(self, value, connection):
        return ("%s", [str(v) for v in value])


class _UserDescriptor(ForwardManyToOneDescriptor):
    def get_queryset(self, **hints):
        # Users live in the site's database, not in the mirror's: route without the instance hint.
        return self.field.remote_field.model._base_manager.all()


class MirrorUserField(models.ForeignKey):
    """A foreign key to the user model stored in a text column, compared as text."""

    forward_related_accessor_class = _UserDescriptor

    def get_db_prep_value(self, value, connection, prepared=False):
        return None if value is None else str(value)


MirrorUserField.register_lookup(_TextExact)
MirrorUserField.register_lookup(_TextIn)


class MirrorQuerySet(models.QuerySet):
    """A queryset whose `delete()` revokes through Redis and whose `update()` is refused."""

    def delete(self) -> tuple[int, dict[str, int]]:
        by_owner: dict[str, list[str]] = defaultdict(list)
        anonymous = 0
        for handle, user_id in self.values_list("handle", "user_id"):
            if user_id is None:
                anonymous += 1
            else:
                by_owner[user_id].append(handle)
        if anonymous:
            # QSESS.REVOKE needs the owner; an anonymous session can only be ended by its id,
            # which nobody but its browser knows.
            raise NotImplementedError(
                f"{anonymous} anonymous session(s) cannot be revoked by handle; "
                "exclude them (user__isnull=False)"
            )
        client = conf.client()
        pipe = client.redis.pipeline(transaction=False)
        for user_id, handles in by_owner.items():
            pipe.execute_command("QSESS.REVOKE", user_id, *handles)
        ended = sum(int(n) for n in pipe.execute()) if by_owner else 0
        return ended, {self.model._meta.label: ended}

    delete.alters_data = True
    delete.queryset_only = True

    def update(self, **kwargs: Any) -> int:
        raise NotImplementedError("the qsess mirror is read-only; sessions change through Redis")

    update.alters_data = True


class MirrorManager(models.Manager.from_queryset(MirrorQuerySet)):
    """Reads from the database alias that holds the mirror (`QSESS_DATABASE`)."""

    def get_queryset(self) -> MirrorQuerySet:
        return super().get_queryset().using(conf.database_alias())


class AbstractMirrorSession(models.Model):
    handle = models.CharField(max_length=32, primary_key=True)
    user = MirrorUserField(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        related_name="+",
    )
    ip = models.GenericIPAddressField(null=True, verbose_name="IP")
    user_agent = models.TextField(null=True)
    device = models.TextField(null=True)
    location = models.TextField(null=True)
    country = models.CharField(max_length=2, null=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    last_seen = models.DateTimeField(verbose_name="last activity")
    expires_at = models.DateTimeField()
    absolute_expires_at = models.DateTimeField(null=True)
    version = models.BigIntegerField()

    objects = MirrorManager()

    class Meta:
        abstract = True
        managed = False
        ordering = ["-last_seen"]

    def __str__(self) -> str:
        return self.handle

    def save(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("the qsess mirror is read-only; sessions change through Redis")

    def delete(self, using: Any = None, keep_parents: bool = False) -> tuple[int, dict[str, int]]:
        """Log this session out: `QSESS.REVOKE owner handle`."""
        if self.user_id is None:
            raise NotImplementedError("an anonymous session cannot be revoked by handle")
        ended = conf.client().revoke(str(self.user_id), self.handle)
        return ended, {self._meta.label: ended}

    @property
    def is_live(self) -> bool:
        from django.utils import timezone

        ended = getattr(self, "ended_at", None)
        return ended is None and self.expires_at > timezone.now()


class Session(AbstractMirrorSession):
    """Every mirrored session, including ended ones (`ended_at`, `end_reason`) until purged."""

    ended_at = models.DateTimeField(null=True)
    end_reason = models.TextField(null=True)

    class Meta(AbstractMirrorSession.Meta):
        db_table = 'qsess"."sessions'
        verbose_name = "session"
        verbose_name_plural = "sessions"


class LiveSession(AbstractMirrorSession):
    """The sessions valid now (the `qsess.live_sessions` view)."""

    class Meta(AbstractMirrorSession.Meta):
        db_table = 'qsess"."live_sessions'
        verbose_name = "live session"
        verbose_name_plural = "live sessions"
