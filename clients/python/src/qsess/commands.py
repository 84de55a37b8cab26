"""Argument lists of the QSESS.* commands, shared by the sync and asyncio clients.

Each function validates nothing the server validates (the module checks every input before it
writes); it only spells the options so both clients send exactly the same commands.
"""

from __future__ import annotations

from typing import Any, Union

Bytes = Union[str, bytes]


def session_option_words(
    *,
    data: Bytes | None = None,
    user: Bytes | None = None,
    anon: bool = False,
    ip: str | None = None,
    ua: str | None = None,
    idle_ms: int | None = None,
    absolute_ms: int | None = None,
    nx: bool = False,
    xx: bool = False,
    limit: int | None = None,
) -> list:
    """The options QSESS.SET and QSESS.NEW share, as words: `[USER|ANON] [DATA] [IP] [UA] [IDLE]
    [ABSOLUTE] [NX|XX] [LIMIT]`. The one list of them, so that both commands and both clients spell
    every option the same way. `USER` comes first because on Redis Cluster QSESS.NEW is routed by
    its second word, which must then be the uid."""
    args: list = []
    if user is not None:
        args += ["USER", user]
    if anon:
        args.append("ANON")
    if data is not None:
        args += ["DATA", data]
    if ip is not None:
        args += ["IP", ip]
    if ua is not None:
        args += ["UA", ua]
    if idle_ms is not None:
        args += ["IDLE", int(idle_ms)]
    if absolute_ms is not None:
        args += ["ABSOLUTE", int(absolute_ms)]
    if nx:
        args.append("NX")
    if xx:
        args.append("XX")
    if limit is not None:
        args += ["LIMIT", int(limit)]
    return args


def set_args(sid: Bytes, **options: Any) -> list:
    """`QSESS.SET sid [options]`, the options as `session_option_words` takes them."""
    return ["QSESS.SET", sid, *session_option_words(**options)]


def new_args(**options: Any) -> list:
    """`QSESS.NEW [options]`: those of `session_option_words` but NX and XX, which QSESS.NEW does not
    take (the id it mints is always new)."""
    refused = sorted({"nx", "xx"} & options.keys())
    if refused:
        raise TypeError(f"new_args() got an unexpected keyword argument {refused[0]!r}")
    return ["QSESS.NEW", *session_option_words(**options)]


def get_args(sid: Bytes, *, notouch: bool = False) -> list:
    return ["QSESS.GET", sid, "NOTOUCH"] if notouch else ["QSESS.GET", sid]


def peek_args(sid: Bytes) -> list:
    return ["QSESS.PEEK", sid]


def touch_args(sid: Bytes) -> list:
    return ["QSESS.TOUCH", sid]


def rotate_args(old_sid: Bytes, new_sid: Bytes) -> list:
    return ["QSESS.ROTATE", old_sid, new_sid]


def del_args(*sids: Bytes) -> list:
    return ["QSESS.DEL", *sids]


def byuser_args(uid: Bytes, *, withmeta: bool = False) -> list:
    return ["QSESS.BYUSER", uid, "WITHMETA"] if withmeta else ["QSESS.BYUSER", uid]


def revokeuser_args(uid: Bytes, *, except_sid: Bytes | None = None) -> list:
    if except_sid is None:
        return ["QSESS.REVOKEUSER", uid]
    return ["QSESS.REVOKEUSER", uid, "EXCEPT", except_sid]


def revoke_args(uid: Bytes, *handles: str) -> list:
    return ["QSESS.REVOKE", uid, *handles]
