"""Settings of the Django integration and the shared Redis connections.

`QSESS_REDIS_URL` comes from the environment variable of that name first, then Django's settings,
then `redis://127.0.0.1:6379/0`; the environment wins so tests and benchmarks can point an unchanged
project at their own server. Clients are cached per URL (and, for asyncio, per event loop, since a
redis.asyncio connection belongs to the loop that opened it).
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from typing import Any

import redis
import redis.asyncio as aredis
from django.conf import settings
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from ..aio import AsyncQsessClient
from ..client import QsessClient

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

_lock = threading.Lock()
_clients: dict[tuple[str, tuple], QsessClient] = {}
_async_clients: dict[tuple[str, tuple], weakref.WeakKeyDictionary] = {}


def redis_url() -> str:
    return (
        os.environ.get("QSESS_REDIS_URL") or getattr(settings, "QSESS_REDIS_URL", None) or DEFAULT_REDIS_URL
    )


def redis_cluster() -> bool:
    """`QSESS_REDIS_CLUSTER` (environment first, then settings): the URL names a node of a Redis
    Cluster, reached through redis-py's `RedisCluster`."""
    from_environment = os.environ.get("QSESS_REDIS_CLUSTER")
    if from_environment is not None:
        return from_environment.lower() in ("1", "true", "yes", "on")
    return bool(getattr(settings, "QSESS_REDIS_CLUSTER", False))


def redis_options() -> dict[str, Any]:
    """Extra keyword arguments for redis-py (`QSESS_REDIS_OPTIONS`, e.g. `{"protocol": 3}`)."""
    return dict(getattr(settings, "QSESS_REDIS_OPTIONS", None) or {})


def database_alias() -> str:
    """The database alias holding the qsess-syncd mirror (`QSESS_DATABASE`, default "default")."""
    return getattr(settings, "QSESS_DATABASE", None) or "default"


def absolute_timeout_ms() -> int:
    """`QSESS_ABSOLUTE_TIMEOUT` (seconds since creation, None = no cap) as qsess's ABSOLUTE ms."""
    seconds: float | None = getattr(settings, "QSESS_ABSOLUTE_TIMEOUT", None)
    return int(seconds * 1000) if seconds else 0


def session_limit() -> int | None:
    """`QSESS_SESSION_LIMIT`: at most this many live sessions per user; a login beyond it ends the
    oldest (`LIMIT n` on every write with an owner). None (the default) sends no LIMIT."""
    limit = getattr(settings, "QSESS_SESSION_LIMIT", None)
    return int(limit) if limit else None


def track_client() -> bool:
    """`QSESS_TRACK_CLIENT` (default True): write a session again when its IP or user agent changed.

    Turn it off when the module runs with `qsess.ip-mode none` or `qsess.ua-mode none`: the record
    then never holds what the request has, and every request would write.
    """
    return bool(getattr(settings, "QSESS_TRACK_CLIENT", True))


def _key() -> tuple[str, tuple]:
    options = redis_options()
    return redis_url(), (("cluster", redis_cluster()), *sorted((k, repr(v)) for k, v in options.items()))


def client() -> QsessClient:
    """The process-wide sync client for the configured URL."""
    key = _key()
    found = _clients.get(key)
    if found is not None:
        return found
    with _lock:
        found = _clients.get(key)
        if found is None:
            connect = RedisCluster.from_url if redis_cluster() else redis.Redis.from_url
            found = QsessClient(connect(key[0], **redis_options()))
            _clients[key] = found
        return found


def async_client() -> AsyncQsessClient:
    """The asyncio client for the configured URL on the running event loop."""
    key = _key()
    loop = asyncio.get_running_loop()
    per_loop = _async_clients.setdefault(key, weakref.WeakKeyDictionary())
    found = per_loop.get(loop)
    if found is None:
        connect = AsyncRedisCluster.from_url if redis_cluster() else aredis.Redis.from_url
        found = AsyncQsessClient(connect(key[0], **redis_options()))
        per_loop[loop] = found
    return found


def reset_clients() -> None:
    """Drop cached clients (tests that switch servers call this)."""
    with _lock:
        for found in _clients.values():
            found.redis.close()
        _clients.clear()
        _async_clients.clear()
