"""Synchronous typed client for the QSESS.* commands, over any redis-py `Redis` connection.

Works with RESP2 and RESP3 connections, with or without hiredis, with or without
`decode_responses` (session data then comes back as text; keep it off for binary data).
"""

from __future__ import annotations

from typing import Any

import redis
from redis.exceptions import ResponseError

from . import commands as c
from .errors import translate
from .records import DeviceSession, SessionRecord, _text

Bytes = c.Bytes


class QsessClient:
    """One method per QSESS command; error replies are raised as `qsess.errors.QsessError`."""

    def __init__(self, connection: redis.Redis) -> None:
        self.redis = connection

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> QsessClient:
        """A client on `redis.Redis.from_url(url, **kwargs)`, e.g. `protocol=3`."""
        return cls(redis.Redis.from_url(url, **kwargs))

    def execute(self, *args: Any) -> Any:
        """Send one command, turning an error reply into its typed exception."""
        try:
            return self.redis.execute_command(*args)
        except ResponseError as error:
            raise translate(error) from None

    def set(self, sid: Bytes, **options: Any) -> int | None:
        """QSESS.SET: the new version, or None when NX/XX did not hold (options: `session_option_words`)."""
        return self.execute(*c.set_args(sid, **options))

    def new(self, **options: Any) -> str:
        """QSESS.NEW: creates a session under an id the server mints, and returns that id."""
        return _text(self.execute(*c.new_args(**options))) or ""

    def get(self, sid: Bytes, *, notouch: bool = False) -> SessionRecord | None:
        """QSESS.GET: the record, or None. Counts as activity unless `notouch`."""
        return SessionRecord.from_reply(self.execute(*c.get_args(sid, notouch=notouch)))

    def peek(self, sid: Bytes) -> SessionRecord | None:
        """QSESS.PEEK: the record without activity and without waiting for the mirror."""
        return SessionRecord.from_reply(self.execute(*c.peek_args(sid)))

    def touch(self, sid: Bytes) -> bool:
        """QSESS.TOUCH: True if the session is live."""
        return bool(self.execute(*c.touch_args(sid)))

    def rotate(self, old_sid: Bytes, new_sid: Bytes) -> int | None:
        """QSESS.ROTATE: the new version, or None if the old session does not exist."""
        return self.execute(*c.rotate_args(old_sid, new_sid))

    def delete(self, *sids: Bytes) -> int:
        """QSESS.DEL: logs the sessions out; how many existed in Redis."""
        return int(self.execute(*c.del_args(*sids)))

    def by_user(self, uid: Bytes) -> list[str]:
        """QSESS.BYUSER: handles of the user's live sessions, soonest to expire first."""
        return [_text(h) or "" for h in self.execute(*c.byuser_args(uid))]

    def devices(self, uid: Bytes) -> list[DeviceSession]:
        """QSESS.BYUSER ... WITHMETA: the user's live sessions with device, location and times."""
        reply = self.execute(*c.byuser_args(uid, withmeta=True))
        return [DeviceSession.from_reply(entry) for entry in reply]

    def revoke_user(self, uid: Bytes, *, except_sid: Bytes | None = None) -> int:
        """QSESS.REVOKEUSER: ends all the user's sessions (but `except_sid`); how many."""
        return int(self.execute(*c.revokeuser_args(uid, except_sid=except_sid)))

    def revoke(self, uid: Bytes, *handles: str) -> int:
        """QSESS.REVOKE: ends the user's sessions with these handles; how many."""
        if not handles:
            return 0
        return int(self.execute(*c.revoke_args(uid, *handles)))
