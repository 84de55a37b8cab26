"""qsess: a typed Python client for qsess sessions in Redis, and a Django session backend (`qsess.django`)."""

from .aio import AsyncQsessClient
from .client import QsessClient
from .errors import (
    EndsInThePastError,
    InvalidArgumentError,
    InvalidSessionIdError,
    OutOfMemoryError,
    PermissionDeniedError,
    QsessError,
    RevokedSessionIdError,
    SessionIdInUseError,
    TooManySessionsError,
    WrongSlotError,
    WrongTypeError,
)
from .records import DeviceSession, SessionRecord, session_handle

__all__ = [
    "AsyncQsessClient",
    "DeviceSession",
    "EndsInThePastError",
    "InvalidArgumentError",
    "InvalidSessionIdError",
    "OutOfMemoryError",
    "PermissionDeniedError",
    "QsessClient",
    "QsessError",
    "RevokedSessionIdError",
    "SessionIdInUseError",
    "SessionRecord",
    "TooManySessionsError",
    "WrongSlotError",
    "WrongTypeError",
    "session_handle",
]
