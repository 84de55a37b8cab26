"""The Django integration on the real stack: backend, middleware, devices, mirror model, admin, importer."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from datetime import timedelta
from io import StringIO

import django
import pytest
from conftest import wait_for
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.base import UpdateError
from django.core.management import call_command
from django.db import connections
from django.test import Client, RequestFactory, override_settings
from django.utils import timezone

from qsess import InvalidSessionIdError, session_handle
from qsess.django import conf, devices
from qsess.django.backend import SessionStore
from qsess.django.middleware import client_ip
from qsess.django.models import LiveSession, Session

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
)
ASYNC_SESSIONS = django.VERSION >= (5, 1)


def make_user(password: str = "pw", **extra):
    name = "user" + secrets.token_hex(4)
    return get_user_model().objects.create_user(name, password=password, **extra)


def logged_in(user, ip: str = "198.51.100.7", ua: str = FIREFOX) -> SessionStore:
    store = SessionStore(ip=ip, user_agent=ua)
    store["_auth_user_id"] = str(user.pk)
    store.save()
    return store


def record(key: str):
    return conf.client().peek(key)


# -- backend ---------------------------------------------------------------------------------


def test_store_keeps_owner_ip_and_user_agent():
    user = make_user()
    store = logged_in(user, ip="::ffff:198.51.100.9")
    r = record(store.session_key)
    assert (r.user, r.ip, r.ua, r.device) == (
        str(user.pk),
        "198.51.100.9",
        FIREFOX,
        "Firefox 120 on Linux",
    )
    loaded = SessionStore(store.session_key)
    assert loaded["_auth_user_id"] == str(user.pk)
    assert loaded.modified is False


def test_new_ip_or_user_agent_is_written_on_the_next_request():
    store = logged_in(make_user())
    again = SessionStore(store.session_key, ip="203.0.113.50", user_agent=FIREFOX)
    again.load()
    assert again.modified is True
    again.save()
    assert record(store.session_key).ip == "203.0.113.50"
    same = SessionStore(store.session_key, ip="203.0.113.50", user_agent=FIREFOX)
    same.load()
    assert same.modified is False


def test_truncated_ip_mode_does_not_write_every_request():
    store = logged_in(make_user(), ip="198.51.100.7")
    client = conf.client()
    client.redis.config_set("qsess.ip-mode", "truncated")
    try:
        again = SessionStore(store.session_key, ip="198.51.100.7", user_agent=FIREFOX)
        again.save()  # stores 198.51.100.0
        assert record(store.session_key).ip == "198.51.100.0"
        same = SessionStore(store.session_key, ip="198.51.100.7", user_agent=FIREFOX)
        same.load()
        assert same.modified is False
    finally:
        client.redis.config_set("qsess.ip-mode", "full")
    with override_settings(QSESS_TRACK_CLIENT=False):
        moved = SessionStore(store.session_key, ip="203.0.113.99", user_agent=FIREFOX)
        moved.load()
        assert moved.modified is False


def test_invalid_ip_and_long_user_agent_do_not_break_saving():
    store = SessionStore(ip="unknown", user_agent="x" * 2000)
    store["a"] = 1
    store.save()
    r = record(store.session_key)
    assert r.ip is None and len(r.ua) == 512


def test_logout_elsewhere_is_never_resurrected():
    user = make_user()
    mine = logged_in(user)
    devices.logout_everywhere(user)
    mine["more"] = True
    with pytest.raises(UpdateError):
        mine.save()
    assert SessionStore(mine.session_key).load() == {}


def test_saving_an_unknown_key_does_not_create_it():
    key = secrets.token_hex(16)
    with pytest.raises(UpdateError):
        SessionStore(key).save()
    assert record(key) is None


def test_integer_expiry_is_the_idle_timeout():
    store = SessionStore()
    store["a"] = 1
    store.set_expiry(600)
    store.save()
    r = record(store.session_key)
    assert (r.idle, r.abs) == (600_000, 0)
    assert abs(r.expires - (r.seen + 600_000)) < 5


def test_default_expiry_is_session_cookie_age():
    store = SessionStore()
    store["a"] = 1
    store.save()
    assert record(store.session_key).idle == 1_209_600_000  # two weeks, Django's default


def test_datetime_expiry_is_a_fixed_deadline():
    store = SessionStore()
    deadline = timezone.now() + timedelta(minutes=5)
    store.set_expiry(deadline)
    store.save()
    r = record(store.session_key)
    assert abs(r.expires - deadline.timestamp() * 1000) < 1000  # the request's latency
    assert abs(r.abs - deadline.timestamp() * 1000) < 1000  # the request's latency
    # a later save (another object, so the creation time comes from the record) keeps it
    again = SessionStore(store.session_key)
    again["b"] = 2
    again.save()
    assert abs(record(store.session_key).abs - deadline.timestamp() * 1000) < 1000  # the request's latency


@override_settings(QSESS_ABSOLUTE_TIMEOUT=3600)
def test_absolute_timeout_setting_caps_the_lifetime():
    store = SessionStore()
    store["a"] = 1
    store.save()
    r = record(store.session_key)
    assert r.abs - r.created == 3_600_000
    assert r.idle == 1_209_600_000


def test_expiry_in_the_past_ends_the_session():
    store = SessionStore()
    store["a"] = 1
    store.save()
    key = store.session_key
    store.set_expiry(-timedelta(seconds=5))
    store.save()
    assert record(key) is None
    assert SessionStore(key).load() == {}


def test_cycle_key_rotates_and_keeps_owner_and_data():
    user = make_user()
    store = logged_in(user)
    old = store.session_key
    store["cart"] = [1, 2]
    store.save()
    store.cycle_key()
    assert store.session_key != old and store.modified is True
    assert record(old) is None
    assert SessionStore(old).exists(old) is False
    r = record(store.session_key)
    assert r.user == str(user.pk)
    assert SessionStore(store.session_key)["cart"] == [1, 2]


def test_invalid_ids_are_no_session():
    long_key = "k" * 300
    store = SessionStore(long_key)
    assert store.load() == {}
    assert store.session_key is None
    assert SessionStore().exists(long_key) is False
    SessionStore().delete(long_key)  # no error


@override_settings(QSESS_SESSION_LIMIT=2)
def test_session_limit_ends_the_oldest():
    user = make_user()
    sessions = []
    for _ in range(3):
        sessions.append(logged_in(user))
        time.sleep(0.003)  # "oldest" is by creation time in ms; ties are broken arbitrarily
    first, second, third = sessions
    assert record(first.session_key) is None
    assert {d.handle for d in devices.list_devices(user)} == {
        session_handle(second.session_key),
        session_handle(third.session_key),
    }


def test_ids_the_module_refuses_are_no_session():
    # The module refuses ids shorter than qsess.min-session-id-bytes; Django's keys are 32.
    redis_client = conf.client().redis
    redis_client.config_set("qsess.min-session-id-bytes", "40")
    try:
        key = secrets.token_hex(16)
        assert SessionStore(key).load() == {}
        assert SessionStore().exists(key) is False
        SessionStore().delete(key)
        with pytest.raises(UpdateError):
            SessionStore(key).save()
        with pytest.raises(InvalidSessionIdError):
            SessionStore().save()  # a configuration error, not a collision to retry
    finally:
        redis_client.config_set("qsess.min-session-id-bytes", "1")


def test_clear_expired_is_a_no_op():
    assert SessionStore.clear_expired() is None


# Django 5.1 added the async session API (aget, aset, _aget_session, which asave needs); Django 4.2
# has none of it, so there the test does not exist rather than being skipped.
if ASYNC_SESSIONS:

    def test_async_session_api():
        async def scenario():
            store = SessionStore(ip="192.0.2.10", user_agent=IPHONE)
            await store.aset("_auth_user_id", "async-user")
            await store.asave()
            key = store.session_key
            assert await store.aexists(key)
            again = SessionStore(key)
            assert await again.aget("_auth_user_id") == "async-user"
            await again.acycle_key()
            assert not await again.aexists(key)
            await again.aset_expiry(timezone.now() + timedelta(minutes=1))
            await again.asave()
            await again.adelete()
            assert not await again.aexists(again.session_key)
            return key

        key = asyncio.run(scenario())
        assert record(key) is None


# -- middleware ------------------------------------------------------------------------------


def test_client_ip_follows_only_trusted_proxies():
    rf = RequestFactory()
    direct = rf.get("/", REMOTE_ADDR="203.0.113.1", HTTP_X_FORWARDED_FOR="1.2.3.4")
    assert client_ip(direct) == "203.0.113.1"  # not a trusted proxy: the header is ignored
    proxied = rf.get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.2, 10.1.1.1")
    assert client_ip(proxied) == "203.0.113.2"  # rightmost address no trusted proxy added
    only_proxies = rf.get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="10.3.3.3")
    assert client_ip(only_proxies) == "10.3.3.3"
    with override_settings(QSESS_TRUSTED_PROXIES=[]):
        assert client_ip(proxied) == "10.0.0.2"


def test_middleware_passes_ip_and_user_agent():
    client = Client(HTTP_USER_AGENT=IPHONE, REMOTE_ADDR="10.0.0.9", HTTP_X_FORWARDED_FOR="192.0.2.33")
    assert client.get("/whoami/").json()["visits"] == 1
    key = client.cookies["sessionid"].value
    r = record(key)
    assert (r.ip, r.ua, r.device) == ("192.0.2.33", IPHONE, "Safari 17 on iPhone")
    assert client.get("/whoami/").json() == {"key": key, "visits": 2}


def login_client(user, ua=FIREFOX, ip="198.51.100.20") -> Client:
    client = Client(HTTP_USER_AGENT=ua, REMOTE_ADDR=ip)
    response = client.post("/login/", {"username": user.username, "password": "pw"})
    assert response.status_code == 200
    return client


# -- devices -------------------------------------------------------------------------------


def test_devices_helpers():
    user = make_user()
    phone = logged_in(user, ip="192.0.2.1", ua=IPHONE)
    laptop = logged_in(user, ip="192.0.2.2", ua=FIREFOX)
    third = logged_in(user, ip="192.0.2.3", ua=FIREFOX)
    listed = devices.list_devices(user, laptop.session_key)
    assert {d.handle for d in listed} == {session_handle(s.session_key) for s in (phone, laptop, third)}
    current = [d for d in listed if d.current]
    assert [d.device for d in current] == ["Firefox 120 on Linux"]
    assert current[0].ip == "192.0.2.2" and current[0].last_activity is not None
    assert current[0].location is None  # a documentation address the database does not know
    tehran = logged_in(user, ip="203.0.113.7", ua=IPHONE)
    found = {d.handle: d for d in devices.list_devices(user, laptop.session_key)}
    assert (
        found[session_handle(tehran.session_key)].location,
        found[session_handle(tehran.session_key)].country,
    ) == ("Tehran, Iran", "IR")
    assert devices.logout_device(user, session_handle(tehran.session_key)) is True
    assert devices.logout_device(user, session_handle(phone.session_key)) is True
    assert devices.logout_device(make_user(), session_handle(third.session_key)) is False
    assert devices.logout_other_devices(user, laptop.session_key) == 1
    assert [d.handle for d in devices.list_devices(user)] == [session_handle(laptop.session_key)]
    assert devices.logout_everywhere(user) == 1
    assert devices.list_devices(user) == []


def test_async_devices_helpers():
    user = make_user()
    one, two, three = (logged_in(user, ua=IPHONE) for _ in range(3))

    async def scenario():
        listed = await devices.alist_devices(user, one.session_key)
        assert len(listed) == 3 and sum(d.current for d in listed) == 1
        assert await devices.alogout_device(user, session_handle(two.session_key)) is True
        assert await devices.alogout_other_devices(user, one.session_key) == 1
        assert await devices.alogout_everywhere(user) == 1
        return await devices.alist_devices(user)

    assert asyncio.run(scenario()) == []
    assert all(record(s.session_key) is None for s in (one, two, three))


def test_devices_page():
    user = make_user()
    phone = login_client(user, ua=IPHONE, ip="192.0.2.40")
    laptop = login_client(user, ua=FIREFOX, ip="192.0.2.41")
    page = laptop.get("/devices/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Safari 17 on iPhone" in html and "Firefox 120 on Linux" in html and "This device" in html
    phone_key = phone.cookies["sessionid"].value
    response = laptop.post(f"/devices/{session_handle(phone_key)}/logout/")
    assert response.status_code == 302
    assert record(phone_key) is None
    assert phone.get("/devices/").status_code == 302  # sent to the login page
    other = login_client(user)
    laptop.post("/devices/logout-others/")
    assert record(other.cookies["sessionid"].value) is None
    assert laptop.get("/devices/").status_code == 200


def test_login_rotates_the_session_id():
    client = Client(HTTP_USER_AGENT=FIREFOX)
    client.get("/whoami/")
    anonymous_key = client.cookies["sessionid"].value
    user = make_user()
    client.post("/login/", {"username": user.username, "password": "pw"})
    key = client.cookies["sessionid"].value
    assert key != anonymous_key
    assert record(anonymous_key) is None
    assert record(key).user == str(user.pk)


def test_deleting_a_user_logs_them_out():
    user = make_user()
    store = logged_in(user)
    user.delete()
    assert record(store.session_key) is None


# -- mirror model and admin ------------------------------------------------------------------


def mirrored(handle: str, **filters):
    return wait_for(lambda: Session.objects.filter(handle=handle, **filters).first())


def test_model_reads_the_mirror():
    user = make_user()
    store = logged_in(user, ip="192.0.2.77", ua=IPHONE)
    handle = session_handle(store.session_key)
    row = mirrored(handle)
    assert row is not None
    mirrored_tehran = logged_in(make_user(), ip="203.0.113.9")
    assert mirrored(session_handle(mirrored_tehran.session_key)).location == "Tehran, Iran"
    assert row.user_id == str(user.pk) and row.user == user
    assert (row.ip, row.device, row.user_agent) == ("192.0.2.77", "Safari 17 on iPhone", IPHONE)
    assert row.is_live
    assert Session.objects.filter(user=user).count() == 1
    assert Session.objects.filter(user__in=[user]).count() == 1
    assert LiveSession.objects.filter(user=user.pk).get().handle == handle
    with pytest.raises(NotImplementedError):
        row.save()
    with pytest.raises(NotImplementedError):
        Session.objects.filter(user=user).update(device="x")


def test_model_delete_revokes_through_redis():
    user = make_user()
    one, two = logged_in(user), logged_in(user)
    for s in (one, two):
        assert mirrored(session_handle(s.session_key))
    mirrored(session_handle(one.session_key)).delete()
    assert record(one.session_key) is None
    ended = mirrored(session_handle(one.session_key), ended_at__isnull=False)
    assert ended.end_reason == "revoke"
    assert Session.objects.filter(user=user, ended_at__isnull=True).delete()[0] == 1
    assert record(two.session_key) is None
    assert wait_for(lambda: not LiveSession.objects.filter(user=user).exists())


def test_a_session_redis_lost_comes_back_from_the_mirror():
    user = make_user()
    store = logged_in(user)
    store["cart"] = ["book"]
    store.save()
    handle = session_handle(store.session_key)
    assert wait_for(lambda: Session.objects.filter(handle=handle, version=2).exists())
    conf.client().redis.delete(f"qs:{{0}}:s:{handle}")  # as if Redis restarted empty
    back = SessionStore(store.session_key)
    assert back["cart"] == ["book"] and back["_auth_user_id"] == str(user.pk)
    assert [d.handle for d in devices.list_devices(user)] == [handle]


def test_a_logged_out_session_never_comes_back_from_the_mirror():
    store = logged_in(make_user())
    handle = session_handle(store.session_key)
    assert mirrored(handle)
    SessionStore().delete(store.session_key)
    assert mirrored(handle, ended_at__isnull=False)
    conf.client().redis.delete(f"qs:{{0}}:t:{handle}")  # even with the tombstone lost
    assert SessionStore(store.session_key).load() == {}


def test_admin_changelist_and_revoke_action():
    admin_user = make_user(is_staff=True, is_superuser=True)
    staff = login_client(admin_user)
    victim = make_user()
    victim_sessions = [logged_in(victim, ip=f"192.0.2.{100 + i}") for i in range(2)]
    handles = [session_handle(s.session_key) for s in victim_sessions]
    for handle in handles:
        assert mirrored(handle)
    page = staff.get("/admin/qsess/session/")
    assert page.status_code == 200
    html = page.content.decode()
    assert all(h in html for h in handles)
    assert staff.get("/admin/qsess/session/", {"status": "live", "q": str(victim.pk)}).status_code == 200
    assert staff.get(f"/admin/qsess/session/{handles[0]}/change/").status_code == 200
    response = staff.post(
        "/admin/qsess/session/",
        {"action": "revoke_sessions", "_selected_action": handles},
        follow=True,
    )
    assert response.status_code == 200
    assert "Logged out 2 session(s)." in response.content.decode()
    assert all(record(s.session_key) is None for s in victim_sessions)
    assert wait_for(lambda: Session.objects.filter(handle__in=handles, ended_at__isnull=False).count() == 2)
    live = staff.get("/admin/qsess/session/", {"status": "live"}).content.decode()
    assert not any(h in live for h in handles)


# -- importer ------------------------------------------------------------------------------

SOURCE_TABLES = {
    "qsessions": """create table if not exists qsessions_session (
        session_key varchar(40) not null primary key, session_data text not null,
        expire_date datetime not null, user_agent varchar(300) null, updated_at datetime not null,
        ip char(39) null, user_id integer null references auth_user (id), created_at datetime null)""",
    "user_sessions": """create table if not exists user_sessions_session (
        session_key varchar(40) not null primary key, session_data text not null,
        expire_date datetime not null, user_agent varchar(200) not null,
        last_activity datetime not null, ip char(39) not null,
        user_id integer null references auth_user (id))""",
}
TABLE = {
    "django": "django_session",
    "qsessions": "qsessions_session",
    "user_sessions": "user_sessions_session",
}


def _insert(source: str, key: str, data: dict, expire, user=None, ip=None, ua=None, secret=None):
    encoder = SessionStore()
    if secret:
        with override_settings(SECRET_KEY=secret):
            encoded = encoder.encode(data)
    else:
        encoded = encoder.encode(data)
    now = timezone.now()
    with connections["default"].cursor() as cursor:
        if source == "django":
            cursor.execute(
                "insert into django_session (session_key, session_data, expire_date) values (%s, %s, %s)",
                [key, encoded, expire],
            )
        elif source == "qsessions":
            cursor.execute(
                "insert into qsessions_session (session_key, session_data, expire_date, user_agent,"
                " updated_at, ip, user_id, created_at) values (%s, %s, %s, %s, %s, %s, %s, %s)",
                [key, encoded, expire, ua, now, ip, user, now],
            )
        else:
            cursor.execute(
                "insert into user_sessions_session (session_key, session_data, expire_date,"
                " user_agent, last_activity, ip, user_id) values (%s, %s, %s, %s, %s, %s, %s)",
                [key, encoded, expire, ua or "", now, ip or "127.0.0.1", user],
            )


@pytest.mark.parametrize("source", ["django", "qsessions", "user_sessions"])
def test_importer(source):
    if source in SOURCE_TABLES:
        with connections["default"].cursor() as cursor:
            cursor.execute(SOURCE_TABLES[source])
    with connections["default"].cursor() as cursor:
        cursor.execute(f"delete from {TABLE[source]}")
    user = make_user()
    now = timezone.now()
    keys = {name: secrets.token_hex(16) for name in ("owned", "anon", "fallback", "expired", "garbage")}
    owned = {"_auth_user_id": str(user.pk), "_auth_user_backend": "x", "cart": [1]}
    if source == "qsessions":
        owned |= {"_qsessions_ip": "192.0.2.200", "_qsessions_user_agent": IPHONE}
    with_meta = {"user": user.pk, "ip": "192.0.2.200", "ua": IPHONE} if source != "django" else {}
    _insert(source, keys["owned"], owned, now + timedelta(hours=2), **with_meta)
    _insert(source, keys["anon"], {"visits": 3}, now + timedelta(days=3))
    _insert(
        source,
        keys["fallback"],
        {"old": True},
        now + timedelta(hours=1),
        secret="qsess-tests-old-secret",
    )
    _insert(source, keys["expired"], {"gone": True}, now - timedelta(hours=1))
    with connections["default"].cursor() as cursor:
        cursor.execute(
            f"update {TABLE[source]} set session_data = 'garbage' where session_key = %s",
            [keys["expired"]],
        )
    _insert(source, keys["garbage"], {"x": 1}, now + timedelta(hours=1))
    with connections["default"].cursor() as cursor:
        cursor.execute(
            f"update {TABLE[source]} set session_data = 'not:signed' where session_key = %s",
            [keys["garbage"]],
        )

    out, err = StringIO(), StringIO()
    call_command("qsess_import", source=source, batch_size=2, stdout=out, stderr=err)
    assert "3 imported" in out.getvalue(), out.getvalue()
    assert "1 expired" in out.getvalue() and "1 empty or undecodable" in out.getvalue()
    assert "resume with --after" in err.getvalue()

    r = record(keys["owned"])
    assert r.user == str(user.pk)
    assert abs(r.expires - (now + timedelta(hours=2)).timestamp() * 1000) < 5000
    assert abs(r.abs - (now + timedelta(hours=2)).timestamp() * 1000) < 5000
    if source != "django":
        assert (r.ip, r.ua) == ("192.0.2.200", IPHONE)
    store = SessionStore(keys["owned"])
    assert store["cart"] == [1] and "_qsessions_ip" not in store
    assert SessionStore(keys["anon"])["visits"] == 3
    assert record(keys["anon"]).user is None
    assert SessionStore(keys["fallback"])["old"] is True
    assert record(keys["expired"]) is None and record(keys["garbage"]) is None

    # A re-run imports nothing twice and does not bring back a session logged out meanwhile.
    SessionStore().delete(keys["anon"])
    out = StringIO()
    call_command("qsess_import", source=source, no_progress=True, stdout=out)
    assert "0 imported, 2 already in qsess, 1 logged out since" in out.getvalue(), out.getvalue()
    assert record(keys["anon"]) is None
    # Resuming after the last key reads nothing.
    out = StringIO()
    call_command("qsess_import", source=source, after=max(keys.values()), no_progress=True, stdout=out)
    assert "Read 0 row(s)" in out.getvalue()


# -- configuration -----------------------------------------------------------------------------


def test_redis_url_environment_wins_over_settings(monkeypatch):
    env_url = os.environ["QSESS_REDIS_URL"]
    with override_settings(QSESS_REDIS_URL="redis://192.0.2.1:1/0"):
        assert conf.redis_url() == env_url
        monkeypatch.delenv("QSESS_REDIS_URL")
        assert conf.redis_url() == "redis://192.0.2.1:1/0"
    assert conf.redis_url() == conf.DEFAULT_REDIS_URL == "redis://127.0.0.1:6379/0"
    monkeypatch.setenv("QSESS_REDIS_URL", env_url)
    assert conf.database_alias() == "qsess"
