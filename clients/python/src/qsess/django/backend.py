"""`SESSION_ENGINE = "qsess.django.backend"`: Django sessions stored by the qsess Redis module.

One QSESS command per operation: load is `QSESS.GET`, create is `QSESS.SET ... NX`, save is
`QSESS.SET ... XX` (so a session logged out elsewhere raises UpdateError instead of coming back),
`cycle_key` is `QSESS.ROTATE`, delete is `QSESS.DEL`. Session data is stored with the site's
SESSION_SERIALIZER (JSON by default) and is not signed: it never leaves the server.

Expiry mapping (see README "Expiry"): an integer expiry (or the default SESSION_COOKIE_AGE) becomes
qsess's idle timeout, so the session ends after that many seconds without activity, as Django's
documentation of `set_expiry` says; a datetime expiry becomes a fixed deadline (idle = remaining
time and absolute = the deadline counted from creation); `QSESS_ABSOLUTE_TIMEOUT` optionally caps
every session's lifetime from its creation (OWASP's absolute timeout). An expiry already in the
past ends the session.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import secrets
import time
from datetime import datetime
from typing import Any

from django.contrib.sessions.backends.base import (
    VALID_KEY_CHARS,
    CreateError,
    SessionBase,
    UpdateError,
)
from django.core.exceptions import SuspiciousOperation
from django.utils import timezone

from ..errors import InvalidSessionIdError, RevokedSessionIdError, SessionIdInUseError, WrongSlotError
from ..records import SessionRecord
from . import conf

# django.contrib.auth.SESSION_KEY, spelled out so importing the backend does not import auth.
AUTH_USER_KEY = "_auth_user_id"
MAX_USER_AGENT_BYTES = 512  # the module's limit; longer agents are cut, as django-qsessions does
_EXPIRY_KEY = "_session_expiry"

logger = logging.getLogger("django.security.SuspiciousSession")


@functools.lru_cache(maxsize=4096)
def normalize_ip(ip: str | None) -> str | None:
    """The address as qsess stores it (`::ffff:1.2.3.4` as `1.2.3.4`), or None if it is not one.

    An invalid address would make the module refuse the whole write, so it is dropped here.
    """
    if not ip:
        return None
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


@functools.lru_cache(maxsize=4096)
def same_ip(stored: str | None, current: str) -> bool:
    """Whether the stored address is this one, also as `qsess.ip-mode truncated` keeps it (/24, /48)."""
    if stored is None:
        return False
    if stored == current:
        return True
    address = ipaddress.ip_address(current)
    prefix = 24 if address.version == 4 else 48
    return stored == str(ipaddress.ip_network(f"{current}/{prefix}", strict=False).network_address)


def truncate_user_agent(user_agent: str | None) -> str | None:
    if not user_agent:
        return None
    raw = user_agent.encode("utf-8")
    if len(raw) <= MAX_USER_AGENT_BYTES:
        return user_agent
    return raw[:MAX_USER_AGENT_BYTES].decode("utf-8", "ignore")


_KEY_ALPHABET = VALID_KEY_CHARS.encode()
_KEY_LIMIT = 256 - 256 % len(_KEY_ALPHABET)  # bytes at or above it would bias the choice


def new_session_key(length: int = 32) -> str:
    """A session key like Django's (32 of a-z0-9, about 165 bits) from os.urandom by rejection."""
    out = bytearray()
    while len(out) < length:
        out += bytes(
            _KEY_ALPHABET[b % len(_KEY_ALPHABET)] for b in secrets.token_bytes(length + 8) if b < _KEY_LIMIT
        )
    return out[:length].decode()


def _now_ms() -> int:
    return int(time.time() * 1000)


class SessionStore(SessionBase):
    """Django's SessionBase over qsess; also records the owner, IP and user agent."""

    def __init__(
        self,
        session_key: str | None = None,
        user_agent: str | None = None,
        ip: str | None = None,
    ) -> None:
        super().__init__(session_key)
        self.user_agent = truncate_user_agent(user_agent)
        self.ip = normalize_ip(ip)
        # The record last read or written: its creation time anchors ABSOLUTE, and its IP and
        # user agent tell whether this request must write new ones.
        self.record: SessionRecord | None = None
        self._created_ms: int | None = None

    # -- encoding -----------------------------------------------------------------------------

    def _dump(self, data: dict) -> bytes:
        dumped = self.serializer().dumps(data)
        return dumped if isinstance(dumped, bytes) else dumped.encode()

    def _load_data(self, raw: bytes) -> dict:
        try:
            return self.serializer().loads(raw)
        except Exception as error:  # a corrupt or foreign payload is an empty session, as in Django
            if isinstance(error, SuspiciousOperation):
                logger.warning(str(error))
            else:
                logger.warning("Session data corrupted")
            return {}

    def _accept(self, record: SessionRecord | None) -> dict:
        """Turn a GET reply into the session dict (or forget the key when there is none)."""
        self.record = record
        if record is None:
            self._session_key = None
            self._created_ms = None
            return {}
        self._created_ms = record.created
        if conf.track_client() and (
            (self.ip is not None and not same_ip(record.ip, self.ip))
            or (self.user_agent is not None and record.ua != self.user_agent)
        ):
            # This request comes from another address or browser: save to record the new ones.
            self.modified = True
        return self._load_data(record.data)

    # -- what a write sends -------------------------------------------------------------------

    def _timeouts(self, data: dict, creating: bool) -> tuple[int, int] | None:
        """(IDLE ms, ABSOLUTE ms) for Django's expiry, or None when it is already over."""
        cap = conf.absolute_timeout_ms()
        expiry = data.get(_EXPIRY_KEY)
        if isinstance(expiry, str):
            expiry = datetime.fromisoformat(expiry)
        if isinstance(expiry, datetime):
            remaining = int((expiry - timezone.now()).total_seconds() * 1000)
            if remaining <= 0:
                return None
            now = _now_ms()
            created = now if creating else (self._created_ms or self._fetch_created() or now)
            absolute = now + remaining - created
            return remaining, min(absolute, cap) if cap else absolute
        seconds = expiry if expiry else self.get_session_cookie_age()
        if seconds <= 0:
            return None
        return int(seconds * 1000), cap

    def _fetch_created(self) -> int | None:
        # Only a datetime expiry set on a session this object never read needs its creation time.
        record = conf.client().peek(self.session_key) if self.session_key else None
        return record.created if record else None

    def _write_options(self, data: dict, timeouts: tuple[int, int]) -> dict[str, Any]:
        user = data.get(AUTH_USER_KEY)
        options: dict[str, Any] = {
            "data": self._dump(data),
            "idle_ms": timeouts[0],
            "absolute_ms": timeouts[1],
        }
        if user is None:
            options["anon"] = True
        else:
            options["user"] = str(user)
            limit = conf.session_limit()
            if limit:
                options["limit"] = limit
        if self.ip is not None:
            options["ip"] = self.ip
        if self.user_agent is not None:
            options["ua"] = self.user_agent
        return options

    # -- SessionBase contract (sync) ----------------------------------------------------------

    def _get_new_session_key(self) -> str:
        # Django's alphabet and length, from one CSPRNG read instead of get_random_string's 32
        # (a third of a create's CPU time). No exists() round trip: QSESS.SET ... NX refuses a key
        # in use atomically.
        return new_session_key()

    def load(self) -> dict:
        key = self.session_key
        if key is None:
            return {}
        try:
            record = conf.client().get(key)
        except InvalidSessionIdError:
            record = None
        return self._accept(record)

    def exists(self, session_key: str | None) -> bool:
        if not session_key:
            return False
        try:
            # NOTOUCH: asking whether a key exists is not activity; GET (unlike PEEK) still
            # reloads a session Redis lost from the mirror.
            return conf.client().get(session_key, notouch=True) is not None
        except InvalidSessionIdError:
            return False

    def create(self) -> None:
        for _ in range(100):
            self._session_key = self._get_new_session_key()
            try:
                self.save(must_create=True)
            except CreateError:
                continue
            self.modified = True
            return
        raise RuntimeError("Unable to create a new qsess session key.")

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None:
            return self.create()
        data = self._get_session(no_load=must_create)
        if self.session_key is None:
            # Loading found no such session (and forgot the key): saving must not create one under
            # a key the client chose; Django's db backend raises UpdateError here too.
            raise UpdateError
        timeouts = self._timeouts(data, must_create)
        client = conf.client()
        if timeouts is None:
            # Django keeps an expired row that nobody can load; qsess refuses to write one, so the
            # session simply ends now (and an existing one is logged out).
            if not must_create:
                self._end(client.delete, self.session_key)
            return None
        options = self._write_options(data, timeouts)
        try:
            version = client.set(self.session_key, nx=must_create, xx=not must_create, **options)
        except (InvalidSessionIdError, RevokedSessionIdError) as error:
            version = self._refused(error, must_create)
        except WrongSlotError:
            # Redis Cluster: a user's sessions live in the user's slot, and this key is in another
            # (the session was anonymous until now). Log in the cluster's way: a new id minted in
            # the user's slot with the same data, then the old one ends; the middleware sends the
            # new key to the browser.
            old_key = self.session_key
            self._session_key = client.new(**options)
            self._end(client.delete, old_key)
            version = 1
            self.modified = True
        return self._after_write(version, must_create)

    @staticmethod
    def _refused(error: Exception, must_create: bool) -> None:
        # A revoked key is taken for good: create() tries another. An id the module refuses
        # (e.g. shorter than qsess.min-session-id-bytes) cannot exist, so an update finds nothing;
        # but creating with it would fail for every key Django mints: a configuration error.
        if must_create and isinstance(error, InvalidSessionIdError):
            raise error
        return None

    def _after_write(self, version: int | None, must_create: bool) -> None:
        if version is None:
            # NX: the key is taken or was revoked; XX: the session was logged out (or expired)
            # meanwhile, and must not be resurrected.
            raise CreateError if must_create else UpdateError
        if must_create:
            self._created_ms = _now_ms()

    @staticmethod
    def _end(delete, session_key: str) -> Any:
        try:
            return delete(session_key)
        except InvalidSessionIdError:
            return 0

    def delete(self, session_key: str | None = None) -> None:
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        self._end(conf.client().delete, session_key)

    def cycle_key(self) -> None:
        data = self._session
        key = self.session_key
        if key is None:
            return super().cycle_key()
        client = conf.client()
        for _ in range(100):
            new_key = self._get_new_session_key()
            try:
                version = client.rotate(key, new_key)
            except (SessionIdInUseError, RevokedSessionIdError):
                continue
            except (InvalidSessionIdError, WrongSlotError):
                # WrongSlotError: on Redis Cluster the new key hashes to another slot; a new
                # session with the data, then ending the old one, is the cluster's rotation.
                version = None
            break
        else:
            raise RuntimeError("Unable to rotate to a new qsess session key.")
        if version is None:
            # The old session is not in the store (never saved, expired or logged out): start a
            # new one with the data, as Django does.
            self._session_key = None
            self._session_cache = data
            self.create()
            self._end(client.delete, key)
            return
        self._session_key = new_key
        self._session_cache = data
        self.modified = True  # the new key must reach the browser

    @classmethod
    def clear_expired(cls) -> None:
        # qsess expires sessions by itself and qsess-syncd purges the mirror: nothing to do.
        return None

    # -- SessionBase contract (asyncio, Django 5.1+) ------------------------------------------

    async def aload(self) -> dict:
        key = self.session_key
        if key is None:
            return {}
        try:
            record = await conf.async_client().get(key)
        except InvalidSessionIdError:
            record = None
        return self._accept(record)

    async def aexists(self, session_key: str | None) -> bool:
        if not session_key:
            return False
        try:
            return await conf.async_client().get(session_key, notouch=True) is not None
        except InvalidSessionIdError:
            return False

    async def acreate(self) -> None:
        for _ in range(100):
            self._session_key = self._get_new_session_key()
            try:
                await self.asave(must_create=True)
            except CreateError:
                continue
            self.modified = True
            return
        raise RuntimeError("Unable to create a new qsess session key.")

    async def asave(self, must_create: bool = False) -> None:
        if self.session_key is None:
            return await self.acreate()
        data = await self._aget_session(no_load=must_create)
        if self.session_key is None:
            raise UpdateError
        client = conf.async_client()
        if not must_create and self._created_ms is None and isinstance(data.get(_EXPIRY_KEY), str):
            record = await client.peek(self.session_key)
            # No record: the XX write below finds nothing and raises UpdateError anyway.
            self._created_ms = record.created if record else _now_ms()
        timeouts = self._timeouts(data, must_create)
        if timeouts is None:
            if not must_create:
                await self._aend(client.delete, self.session_key)
            return None
        options = self._write_options(data, timeouts)
        try:
            version = await client.set(self.session_key, nx=must_create, xx=not must_create, **options)
        except (InvalidSessionIdError, RevokedSessionIdError) as error:
            version = self._refused(error, must_create)
        except WrongSlotError:
            # Redis Cluster: see save().
            old_key = self.session_key
            self._session_key = await client.new(**options)
            await self._aend(client.delete, old_key)
            version = 1
            self.modified = True
        return self._after_write(version, must_create)

    @staticmethod
    async def _aend(delete, session_key: str) -> Any:
        try:
            return await delete(session_key)
        except InvalidSessionIdError:
            return 0

    async def adelete(self, session_key: str | None = None) -> None:
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        await self._aend(conf.async_client().delete, session_key)

    async def acycle_key(self) -> None:
        data = await self._aget_session()
        key = self.session_key
        if key is None:
            await self.acreate()
            self._session_cache = data
            return
        client = conf.async_client()
        for _ in range(100):
            new_key = self._get_new_session_key()
            try:
                version = await client.rotate(key, new_key)
            except (SessionIdInUseError, RevokedSessionIdError):
                continue
            except (InvalidSessionIdError, WrongSlotError):
                # WrongSlotError: on Redis Cluster the new key hashes to another slot; a new
                # session with the data, then ending the old one, is the cluster's rotation.
                version = None
            break
        else:
            raise RuntimeError("Unable to rotate to a new qsess session key.")
        if version is None:
            self._session_key = None
            self._session_cache = data
            await self.acreate()
            await self._aend(client.delete, key)
            return
        self._session_key = new_key
        self._session_cache = data
        self.modified = True

    @classmethod
    async def aclear_expired(cls) -> None:
        return None
