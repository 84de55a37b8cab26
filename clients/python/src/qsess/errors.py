"""Typed exceptions for the error replies of the QSESS.* commands.

The module's error replies are single-line, lowercase sentences (module/src/error.rs); they are
mapped here, in one place, to exception classes so callers catch a type instead of matching text.
"""

from __future__ import annotations

from redis.exceptions import NoPermissionError, ResponseError
from redis.exceptions import OutOfMemoryError as RedisOutOfMemoryError


class QsessError(Exception):
    """Any error reply of a QSESS command, with the server's message."""


class InvalidSessionIdError(QsessError):
    """The session id is not acceptable (empty, too short, too long, wrong bucket)."""


class RevokedSessionIdError(QsessError):
    """The id belongs to a session that was ended; it can never be used again."""


class SessionIdInUseError(QsessError):
    """QSESS.ROTATE: the new id already names a live session."""


class EndsInThePastError(QsessError):
    """The timeouts given would end the session before now; end it with QSESS.DEL instead."""


class TooManySessionsError(QsessError):
    """The owner already has `qsess.max-sessions-per-user` live sessions; write with LIMIT or end some."""


class PermissionDeniedError(QsessError):
    """NOPERM: the connection's ACL user may not touch the keys qsess derives from the arguments."""


class OutOfMemoryError(QsessError):
    """OOM: Redis is over maxmemory (ending an id it does not hold would need a tombstone)."""


class InvalidArgumentError(QsessError):
    """Any other refused input: bad IP, data or user agent too long, unknown option, bad handle."""


class WrongSlotError(QsessError):
    """On Redis Cluster: the write would span hash slots (a session outside its user's slot, ROTATE
    or DEL across slots); the message says what to do instead (log in with QSESS.NEW USER)."""


class WrongTypeError(QsessError):
    """A key qsess would write holds a value it did not write."""


def translate(error: ResponseError) -> QsessError:
    """Return the typed exception for a redis-py ResponseError of a QSESS command."""
    message = str(error)
    if isinstance(error, NoPermissionError):
        return PermissionDeniedError(message)
    if isinstance(error, RedisOutOfMemoryError):
        return OutOfMemoryError(message)
    if message.startswith("on a cluster"):
        return WrongSlotError(message)
    if message.startswith("WRONGTYPE"):
        return WrongTypeError(message)
    if "was revoked" in message:
        return RevokedSessionIdError(message)
    if "already in use" in message:
        return SessionIdInUseError(message)
    if "live sessions" in message and "max-sessions-per-user" in message:
        return TooManySessionsError(message)
    if "before now" in message:
        return EndsInThePastError(message)
    # Every refusal of the id itself starts with "session id" ("must not be empty", "is N bytes
    # long", "must start with its bucket", "is in bucket"), including future minimum lengths.
    if message.startswith("session id"):
        return InvalidSessionIdError(message)
    return InvalidArgumentError(message)
