"""The records QSESS commands reply with, as dataclasses, and the parsing of RESP2 and RESP3 replies.

A record reply is a RESP3 map or, on RESP2, a flat field/value array; both are accepted. Field
names follow the README (`handle`, `data`, `user`, ...); absent fields are None.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, fields
from typing import Any, Callable


def session_handle(session_id: str | bytes) -> str:
    """The handle qsess stores for a session id: base64url(SHA-256(id)) cut to 128 bits.

    Computed locally so a "your devices" page can mark the current session without a round trip.
    """
    raw = session_id.encode() if isinstance(session_id, str) else session_id
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest()[:16]).rstrip(b"=").decode()


def _pairs(reply: Any) -> dict[bytes, Any]:
    """A map reply as a dict with bytes keys, whichever protocol and decoding the client uses."""
    if isinstance(reply, dict):
        # RESP3 without decode_responses, the common case: use the parser's dict as it is.
        if not reply or isinstance(next(iter(reply)), bytes):
            return reply
        return {k.encode(): v for k, v in reply.items()}
    it = iter(reply)
    pairs = dict(zip(it, it))
    if pairs and not isinstance(next(iter(pairs)), bytes):
        return {k.encode(): v for k, v in pairs.items()}
    return pairs


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if value.__class__ is bytes:
        return value.decode("utf-8", "replace")
    return str(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _bytes(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return str(value).encode()


def _text_or_empty(value: Any) -> str:
    return _text(value) or ""


def _bytes_or_empty(value: Any) -> bytes:
    return _bytes(value) or b""


def _int_or_zero(value: Any) -> int:
    return _int(value) or 0


# How each field of a record reply is parsed. Replies name their fields as the dataclasses below do;
# text fields the server may leave out are None, times and counts default to 0.
_FIELD_PARSERS = {
    "handle": _text_or_empty,
    "data": _bytes_or_empty,
    **dict.fromkeys(("user", "ip", "ua", "device", "loc", "cc"), _text),
    **dict.fromkeys(("created", "updated", "seen", "idle", "abs", "expires", "ver"), _int_or_zero),
}


# Each field of a record dataclass: its name, its key in a reply, and its parser.
_FieldPlan = tuple[tuple[str, bytes, Callable[[Any], Any]], ...]


def _field_plan(record_class: type) -> _FieldPlan:
    """The plan of `record_class`, made once at import so that parsing a reply does no lookups by name."""
    return tuple(
        (field.name, field.name.encode(), _FIELD_PARSERS[field.name]) for field in fields(record_class)
    )


def _parsed_fields(plan: _FieldPlan, reply: Any) -> dict[str, Any]:
    """A record reply (map or flat array) parsed as `plan` says, as the dataclass's keyword arguments."""
    f = _pairs(reply)
    return {name: parse(f.get(key)) for name, key, parse in plan}


@dataclass(frozen=True)
class SessionRecord:
    """A session as QSESS.GET / QSESS.PEEK return it. Times are ms since the Unix epoch."""

    handle: str
    data: bytes
    user: str | None
    ip: str | None
    ua: str | None
    device: str | None
    loc: str | None
    cc: str | None
    created: int
    updated: int
    seen: int
    idle: int  # ms, 0 = no idle timeout
    abs: int  # absolute deadline in ms since the epoch, 0 = none
    expires: int
    ver: int

    @classmethod
    def from_reply(cls, reply: Any) -> SessionRecord | None:
        """Parse a record reply (map or flat array); None for a nil reply."""
        if reply is None:
            return None
        return cls(**_parsed_fields(_SESSION_RECORD_FIELDS, reply))


@dataclass(frozen=True)
class DeviceSession:
    """One entry of QSESS.BYUSER ... WITHMETA: what a "your devices" page shows."""

    handle: str
    ip: str | None
    ua: str | None
    device: str | None
    loc: str | None
    cc: str | None
    created: int
    seen: int
    expires: int

    @classmethod
    def from_reply(cls, reply: Any) -> DeviceSession:
        return cls(**_parsed_fields(_DEVICE_SESSION_FIELDS, reply))


_SESSION_RECORD_FIELDS = _field_plan(SessionRecord)
_DEVICE_SESSION_FIELDS = _field_plan(DeviceSession)
