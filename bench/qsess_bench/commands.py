"""The commands part's workload: its session ids, its prefill files and its redis-benchmark command lines.

scripts/bench (through bench/helper.py) and bench/cluster.py build every id, key and command from here. On a
Redis Cluster every id and key carries a hash tag (`tag="{06S}"`, or `tag="{tag}"`, which redis-benchmark
--cluster rewrites into a tag of the node each client talks to), so that a session, its owner, the Lua baseline's
record, index and change stream all share one slot; without a tag (a standalone server) they are unchanged.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterable

from qsess_bench.resp import encode as resp
from qsess_bench.workload import IP, USER_AGENT

IDLE_MS = 1_800_000
ABSOLUTE_MS = 86_400_000
LUA_PREFIX = "bl"  # the baseline's keys: bl:s:<sid>, bl:u:<uid>, bl:chg (qsess uses qs:)
RANDOM = "__rand_int__"  # what redis-benchmark -r replaces with a 12-digit number
# HSET baseline: the 11-field hash session_write.lua writes, with fixed times.
HSET_TIMES = ("created", "1764000000000", "updated", "1764000000000", "seen", "1764000000000")
HSET_LIMITS = ("idle", str(IDLE_MS), "expires", "99999999999999", "abs", "99999999999999", "ver", "1")


def payload(size: int) -> str:
    """A fixed `size`-byte printable payload (no spaces): every run writes the same DATA."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    rng = random.Random(20240601)
    return "".join(rng.choice(alphabet) for _ in range(size))


def sid(i: int | str, name: str = "sid", tag: str = "") -> str:
    """`<tag><name>:<12 digits>`: the shape redis-benchmark gives `sid:__rand_int__` (i may be RANDOM)."""
    return f"{tag}{name}:{i if isinstance(i, str) else f'{i:012d}'}"


def uid(i: int | str, name: str = "user", tag: str = "") -> str:
    return sid(i, name, tag)


def lua_stream(prefix: str = LUA_PREFIX, tag: str = "") -> str:
    """The Lua baseline's change stream: `bl:chg`, `bl:{06S}chg` in a tagged slot."""
    return f"{prefix}:{tag}chg"


def lua_write_keys(session_id: str, user_id: str, prefix: str = LUA_PREFIX, tag: str = "") -> tuple[str, str, str]:
    """session_write.lua's KEYS: the record, the owner's index and the change stream."""
    return f"{prefix}:s:{session_id}", f"{prefix}:u:{user_id}", lua_stream(prefix, tag)


def write_resp_file(path: str, commands: Iterable[tuple[str, ...]]) -> None:
    """Writes each command, RESP-encoded, into `path`: a file `redis-cli --pipe` loads."""
    with open(path, "wb") as out:
        for command in commands:
            out.write(resp(*command))


def resp_module_set(
    path: str,
    count: int,
    per_user: int,
    data_size: int,
    sid_name: str = "sid",
    uid_name: str = "user",
    tag: str = "",
) -> None:
    """QSESS.SET of sessions 0..count-1, `per_user` sessions a user."""
    data = payload(data_size)

    def qsess_set(i: int) -> tuple[str, ...]:
        user = uid(i // per_user, uid_name, tag)
        return ("QSESS.SET", sid(i, sid_name, tag), "DATA", data, "USER", user, "IP", IP, "UA", USER_AGENT)

    write_resp_file(path, map(qsess_set, range(count)))


def resp_lua_set(
    path: str,
    count: int,
    per_user: int,
    data_size: int,
    sha: str,
    prefix: str,
    sid_name: str = "sid",
    uid_name: str = "user",
    tag: str = "",
) -> None:
    """The same sessions through bench/session_write.lua (EVALSHA `sha`) on `prefix` keys."""
    data = payload(data_size)

    def evalsha_session_write(i: int) -> tuple[str, ...]:
        # session_write.lua's KEYS (record, owner index, change stream), then its ARGV: data, ip, ua, idle, absolute.
        keys = lua_write_keys(sid(i, sid_name, tag), uid(i // per_user, uid_name, tag), prefix, tag)
        return ("EVALSHA", sha, "3", *keys, data, IP, USER_AGENT, str(IDLE_MS), str(ABSOLUTE_MS))

    write_resp_file(path, map(evalsha_session_write, range(count)))


def resp_module_touch(path: str, count: int, tag: str = "") -> None:
    write_resp_file(path, (("QSESS.TOUCH", sid(i, tag=tag)) for i in range(count)))


def benchmark_command(test: str, data: str, shas: dict[str, str], tag: str = "") -> list[str]:
    """The redis-benchmark command line of one test of the commands part. `shas` maps the Lua files the
    test runs (session_write.lua, session_write_minimal.lua, session_read.lua, byuser.lua) to their SCRIPT LOAD
    sha; only the test's own script needs to be there."""
    session, user = sid(RANDOM, tag=tag), uid(RANDOM, tag=tag)
    record, index, stream = lua_write_keys(session, user, tag=tag)
    lua_write_arguments = [data, IP, USER_AGENT, str(IDLE_MS), str(ABSOLUTE_MS)]
    match test:
        case "qsess_set":
            return ["QSESS.SET", session, "DATA", data, "USER", user, "IP", IP, "UA", USER_AGENT]
        case "qsess_save":
            # A logged-in session's save: the owner is kept (no USER), so one index is touched, not two.
            return ["QSESS.SET", session, "DATA", data, "IP", IP, "UA", USER_AGENT]
        case "lua_set":
            return ["EVALSHA", shas["session_write.lua"], "3", record, index, stream, *lua_write_arguments]
        case "lua_minimal_set":
            return ["EVALSHA", shas["session_write_minimal.lua"], "3", record, index, stream, *lua_write_arguments]
        case "hset":
            fields = ["data", data, "user", user, "ip", IP, "ua", USER_AGENT, *HSET_TIMES, *HSET_LIMITS]
            return ["HSET", record, *fields]
        case "qsess_get":
            return ["QSESS.GET", session]
        case "hgetall":
            return ["HGETALL", record]
        case "lua_get":
            return ["EVALSHA", shas["session_read.lua"], "1", record]
        case "qsess_peek":
            return ["QSESS.PEEK", session]
        case "qsess_byuser":
            return ["QSESS.BYUSER", uid(RANDOM, "buser", tag), "WITHMETA"]
        case "lua_byuser":
            owner_index = lua_write_keys(session, uid(RANDOM, "buser", tag), tag=tag)[1]
            return ["EVALSHA", shas["byuser.lua"], "1", owner_index, f"{LUA_PREFIX}:s:"]
    raise ValueError(f"no test named {test!r}")


def requests_per_second(csv_output: str) -> str:
    """The requests/s of the last test in redis-benchmark --csv output (with --cluster, after its node list)."""
    rows = [row for row in csv.reader(csv_output.splitlines()) if len(row) > 1 and row[0] != "test"]
    if not rows:
        raise SystemExit(f"bench: no result line in redis-benchmark's CSV output: {csv_output!r}")
    return rows[-1][1]


# What each measured test is called in the results, and the qsess / baseline pairs they report:
# the commands part uses all of them, the cluster part the SET and GET ones.
LABELS = {
    "qsess_set": "QSESS.SET",
    "qsess_save": "QSESS.SET without USER (the owner kept)",
    "lua_set": "Lua EVALSHA (session_write.lua)",
    "lua_minimal_set": "Lua EVALSHA (session_write_minimal.lua)",
    "qsess_get": "QSESS.GET",
    "qsess_peek": "QSESS.PEEK",
    "hgetall": "HGETALL",
    "hset": "HSET of the same 11-field hash (bl:s:<sid>)",
    "lua_get": "Lua EVALSHA (session_read.lua: HGETALL + expiry check)",
    "qsess_byuser": "QSESS.BYUSER uid WITHMETA (10 sessions)",
    "lua_byuser": "Lua EVALSHA (byuser.lua: ZRANGEBYSCORE + HGETALL each, 10 sessions)",
}
COMPARISONS = [
    ("QSESS.SET / Lua EVALSHA", "qsess_set", "lua_set"),
    ("QSESS.SET / minimal Lua EVALSHA", "qsess_set", "lua_minimal_set"),
    ("QSESS.SET / HSET", "qsess_set", "hset"),
    ("QSESS.SET owner kept / HSET", "qsess_save", "hset"),
    ("QSESS.GET / HGETALL", "qsess_get", "hgetall"),
    ("QSESS.GET / Lua read", "qsess_get", "lua_get"),
    ("QSESS.PEEK / HGETALL", "qsess_peek", "hgetall"),
    ("QSESS.BYUSER WITHMETA / Lua", "qsess_byuser", "lua_byuser"),
]
