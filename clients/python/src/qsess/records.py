"""The records QSESS commands reply with, as dataclasses, and the parsing of RESP2 and RESP3 replies.

A record reply is a RESP3 map or, on RESP2, a flat field/value array; both are accepted. Field
names follow the README (`handle`, `data`, `user`, ...); absent fields are None.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any


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
        f = _pairs(reply)
        return cls(
            handle=_text(f.get(b"handle")) or "",
            data=_bytes(f.get(b"data")) or b"",
            user=_text(f.get(b"user")),
            ip=_text(f.get(b"ip")),
            ua=_text(f.get(b"ua")),
            device=_text(f.get(b"device")),
            loc=_text(f.get(b"loc")),
            cc=_text(f.get(b"cc")),
            created=_int(f.get(b"created")) or 0,
            updated=_int(f.get(b"updated")) or 0,
            seen=_int(f.get(b"seen")) or 0,
            idle=_int(f.get(b"idle")) or 0,
            abs=_int(f.get(b"abs")) or 0,
            expires=_int(f.get(b"expires")) or 0,
            ver=_int(f.get(b"ver")) or 0,
        )


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
        f = _pairs(reply)
        return cls(
            handle=_text(f.get(b"handle")) or "",
            ip=_text(f.get(b"ip")),
            ua=_text(f.get(b"ua")),
            device=_text(f.get(b"device")),
            loc=_text(f.get(b"loc")),
            cc=_text(f.get(b"cc")),
            created=_int(f.get(b"created")) or 0,
            seen=_int(f.get(b"seen")) or 0,
            expires=_int(f.get(b"expires")) or 0,
        )
