""" "Your devices": list a user's sessions, log out one device, log out the other devices.

Each helper is one QSESS command (`BYUSER ... WITHMETA`, `REVOKE`, `REVOKEUSER ... EXCEPT`). The
current session is recognised by its handle, computed locally from the session key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..records import DeviceSession, session_handle
from . import conf


def _uid(user: Any) -> str:
    """A user object, a primary key or a uid string, as the owner id qsess stores."""
    return str(getattr(user, "pk", user))


def _when(ms: int) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc) if ms else None


_NEVER = datetime.min.replace(tzinfo=timezone.utc)


def _most_recent_first(devices: list[Device]) -> list[Device]:
    # QSESS.BYUSER lists soonest-to-expire first; people read devices by last activity.
    return sorted(devices, key=lambda d: d.last_activity or _NEVER, reverse=True)


@dataclass(frozen=True)
class Device:
    """One of a user's live sessions, as a devices page shows it."""

    handle: str
    device: str | None  # "Firefox 120 on Linux"
    location: str | None  # "Tehran, Iran", when qsess.geoip-db is set
    country: str | None
    ip: str | None
    user_agent: str | None
    created: datetime | None
    last_activity: datetime | None
    expires: datetime | None
    current: bool

    @classmethod
    def from_meta(cls, meta: DeviceSession, current_handle: str | None) -> Device:
        return cls(
            handle=meta.handle,
            device=meta.device,
            location=meta.loc,
            country=meta.cc,
            ip=meta.ip,
            user_agent=meta.ua,
            created=_when(meta.created),
            last_activity=_when(meta.seen),
            expires=_when(meta.expires),
            current=meta.handle == current_handle,
        )


def list_devices(user: Any, current_session_key: str | None = None) -> list[Device]:
    """The user's live sessions, most recently active first; `current` marks this request's."""
    current = session_handle(current_session_key) if current_session_key else None
    return _most_recent_first([Device.from_meta(m, current) for m in conf.client().devices(_uid(user))])


def logout_device(user: Any, handle: str) -> bool:
    """Log out the user's session with this handle; False if it was not one of theirs."""
    return conf.client().revoke(_uid(user), handle) > 0


def logout_other_devices(user: Any, current_session_key: str | None) -> int:
    """Log out every session of the user but the current one; how many were ended."""
    return conf.client().revoke_user(_uid(user), except_sid=current_session_key or None)


def logout_everywhere(user: Any) -> int:
    """Log out every session of the user, this one included."""
    return conf.client().revoke_user(_uid(user))


async def alist_devices(user: Any, current_session_key: str | None = None) -> list[Device]:
    current = session_handle(current_session_key) if current_session_key else None
    metas = await conf.async_client().devices(_uid(user))
    return _most_recent_first([Device.from_meta(m, current) for m in metas])


async def alogout_device(user: Any, handle: str) -> bool:
    return await conf.async_client().revoke(_uid(user), handle) > 0


async def alogout_other_devices(user: Any, current_session_key: str | None) -> int:
    return await conf.async_client().revoke_user(_uid(user), except_sid=current_session_key or None)


async def alogout_everywhere(user: Any) -> int:
    return await conf.async_client().revoke_user(_uid(user))
