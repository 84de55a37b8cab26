"""Asyncio typed client for the QSESS.* commands, over a `redis.asyncio.Redis` connection.

The same methods and replies as `qsess.client.QsessClient`, awaited.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aredis
from redis.exceptions import ResponseError

from . import commands as c
from .errors import translate
from .records import DeviceSession, SessionRecord, _text

Bytes = c.Bytes


class AsyncQsessClient:
    """One coroutine per QSESS command; error replies are raised as `qsess.errors.QsessError`."""

    def __init__(self, connection: aredis.Redis) -> None:
        self.redis = connection

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> AsyncQsessClient:
        return cls(aredis.Redis.from_url(url, **kwargs))

    async def aclose(self) -> None:
        await self.redis.aclose()

    async def execute(self, *args: Any) -> Any:
        try:
            return await self.redis.execute_command(*args)
        except ResponseError as error:
            raise translate(error) from None

    async def set(self, sid: Bytes, **options: Any) -> int | None:
        return await self.execute(*c.set_args(sid, **options))

    async def new(self, **options: Any) -> str:
        return _text(await self.execute(*c.new_args(**options))) or ""

    async def get(self, sid: Bytes, *, notouch: bool = False) -> SessionRecord | None:
        return SessionRecord.from_reply(await self.execute(*c.get_args(sid, notouch=notouch)))

    async def peek(self, sid: Bytes) -> SessionRecord | None:
        return SessionRecord.from_reply(await self.execute(*c.peek_args(sid)))

    async def touch(self, sid: Bytes) -> bool:
        return bool(await self.execute(*c.touch_args(sid)))

    async def rotate(self, old_sid: Bytes, new_sid: Bytes) -> int | None:
        return await self.execute(*c.rotate_args(old_sid, new_sid))

    async def delete(self, *sids: Bytes) -> int:
        return int(await self.execute(*c.del_args(*sids)))

    async def by_user(self, uid: Bytes) -> list[str]:
        return [_text(h) or "" for h in await self.execute(*c.byuser_args(uid))]

    async def devices(self, uid: Bytes) -> list[DeviceSession]:
        reply = await self.execute(*c.byuser_args(uid, withmeta=True))
        return [DeviceSession.from_reply(entry) for entry in reply]

    async def revoke_user(self, uid: Bytes, *, except_sid: Bytes | None = None) -> int:
        return int(await self.execute(*c.revokeuser_args(uid, except_sid=except_sid)))

    async def revoke(self, uid: Bytes, *handles: str) -> int:
        if not handles:
            return 0
        return int(await self.execute(*c.revoke_args(uid, *handles)))
