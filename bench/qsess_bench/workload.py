"""What the benchmarks write and wait for: the sessions' user agent and address, the change stream's backlog."""

from __future__ import annotations

from qsess_bench.resp import Redis

# A real browser's agent (111 bytes): the largest field of every record and stream entry.
USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)
IP = "203.0.113.7"
CHANGE_STREAM = "qs:{0}:chg"


def backlog(redis: Redis) -> int:
    """Changes the daemon has not yet mirrored: pending plus not yet read by its group (the stream's
    length before the group exists)."""
    info = redis.call("XINFO", "GROUPS", CHANGE_STREAM)
    for group in info or []:
        fields = dict(zip(group[::2], group[1::2]))
        if fields.get(b"name") == b"qsess-syncd":
            return int(fields.get(b"pending", 0)) + int(fields.get(b"lag") or 0)
    return int(redis.call("XLEN", CHANGE_STREAM))
