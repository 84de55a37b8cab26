"""The typed client against a real redis-server with the module: every command, RESP2/RESP3, sync/async."""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest
import redis
import redis.asyncio as aredis

from qsess import (
    AsyncQsessClient,
    DeviceSession,
    EndsInThePastError,
    InvalidArgumentError,
    InvalidSessionIdError,
    QsessClient,
    RevokedSessionIdError,
    SessionIdInUseError,
    SessionRecord,
    TooManySessionsError,
    session_handle,
)

UA = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
PROTOCOLS = [2, 3]


def sid() -> str:
    return secrets.token_urlsafe(24)


def uid() -> str:
    return "u" + secrets.token_hex(6)


@pytest.fixture(params=PROTOCOLS, ids=lambda p: f"resp{p}")
def client(request, stack) -> QsessClient:
    connection = redis.Redis.from_url(stack.redis_url, protocol=request.param)
    yield QsessClient(connection)
    connection.close()


def test_handle_matches_module(client):
    # The README's worked example.
    assert session_handle("8f0e2c1d-cookie") == "P13ZvkHwocAgR1ltBTLeaw"
    s = sid()
    client.set(s, data=b"x", user=uid())
    assert client.get(s).handle == session_handle(s)


def test_set_get_peek_record(client):
    s, u = sid(), uid()
    assert client.set(s, data=b"\x00bin\xff", user=u, ip="::ffff:203.0.113.7", ua=UA) == 1
    record = client.get(s)
    assert isinstance(record, SessionRecord)
    assert record.data == b"\x00bin\xff"
    assert record.user == u
    assert record.ip == "203.0.113.7"
    assert record.ua == UA
    assert record.device == "Firefox 120 on Linux"
    assert record.ver == 1
    assert record.expires > record.created > 0
    assert client.peek(s).data == b"\x00bin\xff"
    assert client.get(s, notouch=True).ver == 1
    assert client.set(s, data=b"two", xx=True) == 2
    assert client.get(s).data == b"two"
    assert client.get(sid()) is None
    assert client.peek(sid()) is None


def test_nx_xx_and_timeouts(client):
    s = sid()
    assert client.set(s, data=b"a", xx=True) is None
    assert client.set(s, data=b"a", nx=True, idle_ms=60_000, absolute_ms=0) == 1
    assert client.set(s, data=b"b", nx=True) is None
    record = client.get(s)
    assert record.idle == 60_000
    assert record.abs == 0
    with pytest.raises(InvalidArgumentError):
        client.set(s, idle_ms=0, absolute_ms=0)


def test_new_touch_rotate_delete(client):
    u = uid()
    minted = client.new(user=u, data=b"d", ua=UA)
    assert isinstance(minted, str) and len(minted) >= 32
    assert client.touch(minted) is True
    assert client.touch(sid()) is False
    rotated = sid()
    assert client.rotate(minted, rotated) == 2
    assert client.get(minted) is None
    assert client.get(rotated).data == b"d"
    assert client.rotate(sid(), sid()) is None
    other = sid()
    client.set(other, data=b"o")
    with pytest.raises(SessionIdInUseError):
        client.rotate(rotated, other)
    assert client.delete(rotated, other) == 2
    assert client.set(rotated, data=b"late", xx=True) is None
    with pytest.raises(RevokedSessionIdError):
        client.set(rotated, data=b"late")


def test_by_user_devices_revoke(client):
    u = uid()
    sids = [sid() for _ in range(3)]
    for i, s in enumerate(sids):
        client.set(s, user=u, ip=f"198.51.100.{i + 1}", ua=UA)
    handles = client.by_user(u)
    assert sorted(handles) == sorted(session_handle(s) for s in sids)
    devices = client.devices(u)
    assert all(isinstance(d, DeviceSession) for d in devices)
    assert {d.ip for d in devices} == {"198.51.100.1", "198.51.100.2", "198.51.100.3"}
    assert {d.device for d in devices} == {"Firefox 120 on Linux"}
    assert client.revoke(u, session_handle(sids[0])) == 1
    assert client.revoke(uid(), session_handle(sids[1])) == 0  # someone else's handle
    assert client.revoke(u) == 0
    assert client.revoke_user(u, except_sid=sids[2]) == 1
    assert client.by_user(u) == [session_handle(sids[2])]
    assert client.revoke_user(u) == 1
    assert client.by_user(u) == []


def test_errors_are_typed(client):
    with pytest.raises(InvalidSessionIdError):
        client.set("", data=b"x")
    with pytest.raises(InvalidSessionIdError):
        client.get("x" * 300)
    with pytest.raises(InvalidArgumentError):
        client.set(sid(), ip="not-an-ip")
    with pytest.raises(InvalidArgumentError):
        client.revoke(uid(), "not a handle!")
    s = sid()
    client.set(s, data=b"x")
    time.sleep(0.01)  # so that creation + 1 ms is surely in the past
    with pytest.raises(EndsInThePastError):
        client.set(s, absolute_ms=1, idle_ms=0)


def test_too_many_sessions_is_typed(client):
    client.redis.config_set("qsess.max-sessions-per-user", "2")
    try:
        u = uid()
        client.set(sid(), user=u)
        client.set(sid(), user=u)
        with pytest.raises(TooManySessionsError):
            client.set(sid(), user=u)
        assert client.set(sid(), user=u, limit=2) == 1  # LIMIT ends the oldest instead
    finally:
        client.redis.config_set("qsess.max-sessions-per-user", "500")


def test_decode_responses_client(stack):
    client = QsessClient.from_url(stack.redis_url, decode_responses=True)
    s, u = sid(), uid()
    client.set(s, data="text", user=u)
    record = client.get(s)
    assert record.data == b"text"
    assert record.user == u
    assert client.by_user(u) == [session_handle(s)]


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: f"resp{p}")
def test_async_client(stack, protocol):
    async def scenario() -> None:
        client = AsyncQsessClient(aredis.Redis.from_url(stack.redis_url, protocol=protocol))
        try:
            s, u = sid(), uid()
            assert await client.set(s, data=b"a", user=u, ip="192.0.2.1", ua=UA, nx=True) == 1
            record = await client.get(s)
            assert record.data == b"a" and record.user == u and record.ip == "192.0.2.1"
            assert (await client.peek(s)).ver == 1
            assert await client.touch(s) is True
            minted = await client.new(user=u)
            assert len(await client.by_user(u)) == 2
            assert {d.handle for d in await client.devices(u)} == {
                session_handle(s),
                session_handle(minted),
            }
            s2 = sid()
            assert await client.rotate(s, s2) == 2
            assert await client.revoke(u, session_handle(minted)) == 1
            assert await client.revoke_user(u, except_sid=s2) == 0
            assert await client.delete(s2) == 1
            assert await client.get(s2) is None
            with pytest.raises(RevokedSessionIdError):
                await client.set(s2, data=b"again")
            with pytest.raises(InvalidSessionIdError):
                await client.get("")
        finally:
            await client.aclose()

    asyncio.run(scenario())
