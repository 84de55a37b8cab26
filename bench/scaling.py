#!/usr/bin/env python3
"""How cost grows (Python 3.11 standard library only).

It starts its own redis-server(s) with the qsess module on free loopback ports and measures:
  - QSESS.BYUSER uid WITHMETA and QSESS.REVOKEUSER uid against Lua equivalents on plain keys
    (bench/byuser.lua; bench/revokeuser_tombstones.lua with the same guarantees and bench/revokeuser.lua
    without tombstones, over what bench/session_write.lua writes) for users with 1, 10, 100 and 500
    sessions (500 is qsess.max-sessions-per-user, the most a user can have at the defaults, so the
    largest size shows the longest these commands can hold Redis): one client, one call in flight, each call
    timed from send to reply, the side that goes
    first rotating user by user; every REVOKEUSER call ends a fresh user;
  - QSESS.REVOKEUSER throughput against both Lua scripts, users with 10 sessions, calls pipelined;
  - QSESS.GET throughput (redis-benchmark, 50 clients, P16) with 10k sessions stored against a server holding
    1M sessions (200k with --quick), the two servers side by side, runs alternating A, B, A, B.
Results go to bench/results/scaling.md and stdout.

Usage: bench/scaling.py [--quick]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from qsess_bench.resp import Redis, connect
from qsess_bench.results import publish
from qsess_bench.servers import build, start_redis
from qsess_bench.stats import spread
from qsess_bench.workload import USER_AGENT

ROOT = Path(__file__).resolve().parent.parent
QUICK = "--quick" in sys.argv[1:]
# users timed per size (each user is one BYUSER call and one REVOKEUSER call per side)
CALLS = {1: 150, 10: 150, 100: 40, 500: 12} if QUICK else {1: 600, 10: 600, 100: 150, 500: 45}
SMALL, LARGE = 10_000, (200_000 if QUICK else 1_000_000)
GET_ROUNDS = 1 if QUICK else 3
GET_REQUESTS = 200_000 if QUICK else 600_000
THROUGHPUT_USERS = 500 if QUICK else 2_000
THROUGHPUT_ROUNDS = 1 if QUICK else 3
TOMBSTONE_TTL_MS = 86_400_000  # qsess.tombstone-ttl-ms default
PAYLOAD = "p" * 300
IP = "203.0.113.7"


def log(message: str) -> None:
    print(f"scaling-bench: {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def script(redis: Redis, name: str) -> str:
    return redis.call("SCRIPT", "LOAD", (ROOT / "bench" / name).read_text()).decode()


def fill(
    redis: Redis, size: int, users: int, write_sha: str, prefixes: tuple[str, ...] = ("bl",), user_name: str = ""
) -> None:
    """Gives `users` users `size` sessions each, through QSESS.SET and through session_write.lua once per prefix."""
    commands = []
    for user in range(users):
        uid = f"{user_name or f'sc{size}'}-u{user}"
        for k in range(size):
            sid = f"{uid}-s{k}"
            commands.append(Redis.encode("QSESS.SET", sid, "DATA", PAYLOAD, "USER", uid, "IP", IP, "UA", USER_AGENT))
            for prefix in prefixes:
                commands.append(
                    Redis.encode(
                        "EVALSHA",
                        write_sha,
                        3,
                        f"{prefix}:s:{sid}",
                        f"{prefix}:u:{uid}",
                        f"{prefix}:chg",
                        PAYLOAD,
                        IP,
                        USER_AGENT,
                        1_800_000,
                        86_400_000,
                    )
                )
            if len(commands) >= 2000:
                redis.pipeline(commands)
                commands = []
    if commands:
        redis.pipeline(commands)
    redis.call("DEL", "qs:{0}:chg", *(f"{prefix}:chg" for prefix in prefixes))


def timed(redis: Redis, command: bytes):
    started = time.perf_counter_ns()
    redis.socket.sendall(command)
    reply = redis.read()
    return (time.perf_counter_ns() - started) / 1000, reply


def byuser_commands(uid: str, byuser_sha: str) -> list[bytes]:
    return [
        Redis.encode("QSESS.BYUSER", uid, "WITHMETA"),
        Redis.encode("EVALSHA", byuser_sha, 1, f"bl:u:{uid}", "bl:s:"),
    ]


def revokeuser_commands(uid: str, tombstones_sha: str, minimal_sha: str) -> list[bytes]:
    """QSESS.REVOKEUSER, the Lua with the same guarantees (on bl:), the Lua without tombstones (on bm:)."""
    return [
        Redis.encode("QSESS.REVOKEUSER", uid),
        Redis.encode("EVALSHA", tombstones_sha, 2, f"bl:u:{uid}", "bl:chg", "bl:", TOMBSTONE_TTL_MS),
        Redis.encode("EVALSHA", minimal_sha, 2, f"bm:u:{uid}", "bm:chg", "bm:s:"),
    ]


def per_user(redis: Redis, size: int, users: int, commands_for) -> list[list[float]]:
    """Times one call per side for each user; the side that goes first rotates from user to user."""
    timings: list[list[float]] = []
    for user in range(users):
        uid = f"sc{size}-u{user}"
        commands = commands_for(uid)
        timings = timings or [[] for _ in commands]
        sides = list(range(len(commands)))
        first = user % len(sides)
        for side in sides[first:] + sides[:first]:
            micros, reply = timed(redis, commands[side])
            count = len(reply) if isinstance(reply, list) else reply
            if count != size:
                sys.exit(f"scaling-bench: {commands[side][:60]!r} of {uid} answered {count} sessions, expected {size}")
            timings[side].append(micros)
    return timings


def revokeuser_throughput(redis: Redis, write_sha: str, tombstones_sha: str, minimal_sha: str) -> list[list[float]]:
    """Users revoked per second, one connection with every call pipelined, per side and round."""
    rates: list[list[float]] = [[], [], []]
    for round_number in range(THROUGHPUT_ROUNDS):
        name = f"tp{round_number}"
        fill(redis, 10, THROUGHPUT_USERS, write_sha, ("bl", "bm"), user_name=name)
        sides = [0, 1, 2]
        first = round_number % 3
        for side in sides[first:] + sides[:first]:
            commands = [
                revokeuser_commands(f"{name}-u{user}", tombstones_sha, minimal_sha)[side]
                for user in range(THROUGHPUT_USERS)
            ]
            started = time.perf_counter()
            redis.socket.sendall(b"".join(commands))
            replies = [redis.read() for _ in commands]
            elapsed = time.perf_counter() - started
            if replies != [10] * THROUGHPUT_USERS:
                sys.exit(f"scaling-bench: revokeuser throughput side {side} did not end 10 sessions per user")
            rates[side].append(THROUGHPUT_USERS / elapsed)
        redis.call("DEL", "qs:{0}:chg", "bl:chg", "bm:chg")
    return rates


def block_ratios(qs: list[float], lua: list[float]) -> list[float]:
    """Lua median / qsess median in each third of the calls (speed-up of qsess; > 1 means qsess is faster)."""
    third = max(1, len(qs) // 3)
    ratios = []
    for start in range(0, third * 3, third):
        ratios.append(statistics.median(lua[start : start + third]) / statistics.median(qs[start : start + third]))
    return ratios


def load_gets(redis: Redis, count: int) -> None:
    for start in range(0, count, 2000):
        redis.pipeline(
            [
                Redis.encode(
                    "QSESS.SET",
                    f"sid:{i:012d}",
                    "DATA",
                    PAYLOAD,
                    "USER",
                    f"user:{i // 10:012d}",
                    "IP",
                    IP,
                    "UA",
                    USER_AGENT,
                )
                for i in range(start, min(start + 2000, count))
            ]
        )
        if start % 100_000 == 0:
            redis.call("DEL", "qs:{0}:chg")
    redis.call("DEL", "qs:{0}:chg")


def get_rps(port: int, keyspace: int) -> float:
    out = subprocess.run(
        [
            "redis-benchmark",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-q",
            "--csv",
            "-c",
            "50",
            "-P",
            "16",
            "-r",
            str(keyspace),
            "-n",
            str(GET_REQUESTS),
            "QSESS.GET",
            "sid:__rand_int__",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rows = [line.split('","') for line in out.splitlines() if line.startswith('"') and not line.startswith('"test"')]
    return float(rows[-1][1].strip('"'))


def main() -> None:
    started = time.monotonic()
    artifacts = build("scaling-bench")
    workdir = Path(tempfile.mkdtemp(prefix="qsess-scaling-bench-"))
    os.chmod(workdir, 0o755)
    processes = []
    rows, get_rows = [], []
    try:
        (workdir / "a").mkdir()
        process, port = start_redis(artifacts["module"], workdir / "a")
        processes.append(process)
        redis = connect(port, "scaling-bench")
        write_sha, byuser_sha, tombstones_sha, minimal_sha = (
            script(redis, n) for n in ("session_write.lua", "byuser.lua", "revokeuser_tombstones.lua", "revokeuser.lua")
        )
        for size, users in CALLS.items():
            log(f"{users} users with {size} sessions each, qsess and Lua")
            fill(redis, size, users, write_sha, ("bl", "bm"))
            qs, lua = per_user(redis, size, users, lambda uid: byuser_commands(uid, byuser_sha))
            rows.append(
                ("QSESS.BYUSER WITHMETA", "byuser.lua", size, users, spread(qs), spread(lua), block_ratios(qs, lua))
            )
            qs, same, minimal = per_user(
                redis, size, users, lambda uid: revokeuser_commands(uid, tombstones_sha, minimal_sha)
            )
            rows.append(
                (
                    "QSESS.REVOKEUSER",
                    "revokeuser_tombstones.lua (same guarantees)",
                    size,
                    users,
                    spread(qs),
                    spread(same),
                    block_ratios(qs, same),
                )
            )
            rows.append(
                (
                    "QSESS.REVOKEUSER",
                    "revokeuser.lua (no tombstones)",
                    size,
                    users,
                    spread(qs),
                    spread(minimal),
                    block_ratios(qs, minimal),
                )
            )
            redis.call("DEL", "qs:{0}:chg", "bl:chg", "bm:chg")
        log(f"QSESS.REVOKEUSER throughput: {THROUGHPUT_USERS} users with 10 sessions each per side and round")
        throughput = revokeuser_throughput(redis, write_sha, tombstones_sha, minimal_sha)
        redis.call("FLUSHALL")

        log(f"QSESS.GET: {SMALL:,} sessions on one server, {LARGE:,} on another")
        (workdir / "b").mkdir()
        process_b, port_b = start_redis(artifacts["module"], workdir / "b")
        processes.append(process_b)
        redis_b = connect(port_b, "scaling-bench")
        servers = [(redis, port, SMALL), (redis_b, port_b, LARGE)]
        for client, _, count in servers:
            client.call("CONFIG", "SET", "qsess.touch-granularity-ms", 86_400_000)  # GETs stay reads
            load_gets(client, count)
        memory = [
            int(
                dict(
                    line.split(":", 1) for line in client.call("INFO", "memory").decode().split("\r\n") if ":" in line
                )["used_memory"]
            )
            for client, _, _ in servers
        ]
        small, large = [], []
        for round_number in range(GET_ROUNDS):
            order = servers if round_number % 2 == 0 else servers[::-1]
            for _client, server_port, count in order:
                (small if count == SMALL else large).append(get_rps(server_port, count))
        get_rows = (small, large, memory)
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)

    small, large, memory = get_rows
    ratios = [b / a for a, b in zip(small, large)]
    lines = [
        "# How cost grows",
        "",
        f"Command: `python3 bench/scaling.py{' --quick' if QUICK else ''}`; {time.monotonic() - started:.0f} s "
        f"including the build. Machine: {os.cpu_count()} cores, shared by redis-server and the Python client.",
        "",
        "Per size, users are filled with that many sessions three times: with `QSESS.SET`, and with "
        "`bench/session_write.lua` (plain hash + ZSET index + stream) under the prefixes `bl:` and `bm:`. Each "
        "user then gets one `QSESS.BYUSER uid WITHMETA` and one `bench/byuser.lua` call (ZRANGEBYSCORE + "
        "HGETALL per member); then one `QSESS.REVOKEUSER uid`, one `bench/revokeuser_tombstones.lua` call "
        "(the same guarantees: per member HMGET owner and version, ZREM, DEL, a tombstone SET ... PXAT, XADD "
        "of a `del` change; then the user's revocation time and a `revokeuser` change) and one "
        "`bench/revokeuser.lua` call (ZRANGE, DEL + XADD per member, DEL index: no tombstones, so a replayed "
        "write could bring a session back). The side that goes first rotates from user to user. One client, "
        "one call in flight, µs from send to reply (includes the Python client's parsing of the reply). "
        "Speed-up = baseline median / qsess median in each third of the calls: median (min, max) of the "
        "three; > 1 means qsess is faster.",
        "",
        "| command | baseline | sessions per user | qsess µs median (min–max) | baseline µs median (min–max) | "
        "speed-up median | min | max | users timed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {title} | {baseline} | {size} | {qs} | {lua} | {statistics.median(r):.2f} | {min(r):.2f} | "
            f"{max(r):.2f} | {users} |"
            for title, baseline, size, users, qs, lua, r in rows
        ],
        "",
        f"QSESS.REVOKEUSER throughput, users with 10 sessions each: {THROUGHPUT_USERS:,} users per side and "
        f"round, every call sent at once on one connection (pipelined), users revoked per second from the first "
        f"send to the last reply; {THROUGHPUT_ROUNDS} round(s), the side that goes first rotating. Ratio = qsess / "
        "baseline in the same round.",
        "",
        "| command | users revoked/s median (min–max) | qsess / it, median (min–max) |",
        "|---|---:|---:|",
        f"| QSESS.REVOKEUSER | {spread(throughput[0])} | |",
        f"| revokeuser_tombstones.lua (same guarantees) | {spread(throughput[1])} | "
        f"{spread([a / b for a, b in zip(throughput[0], throughput[1])], '.2f')} |",
        f"| revokeuser.lua (no tombstones) | {spread(throughput[2])} | "
        f"{spread([a / b for a, b in zip(throughput[0], throughput[2])], '.2f')} |",
        "",
        f"QSESS.GET throughput against the number of sessions stored: two servers side by side, "
        f"redis-benchmark -c 50 -P 16 -n {GET_REQUESTS:,} -r <sessions stored>, {GET_ROUNDS} round(s) alternating; "
        "`qsess.touch-granularity-ms` raised to a day so every GET is a pure read."
        + (" Quick mode stores 200k, not 1M, sessions on the large server." if QUICK else ""),
        "",
        "| sessions stored | used_memory | QSESS.GET ops/s median (min–max) |",
        "|---:|---:|---:|",
        f"| {SMALL:,} | {memory[0]:,} | {spread(small)} |",
        f"| {LARGE:,} | {memory[1]:,} | {spread(large)} |",
        f"| ratio {LARGE:,} / {SMALL:,} (per round) | | {spread(ratios, '.2f')} |",
        "",
    ]
    publish("scaling.md", "\n".join(lines))


if __name__ == "__main__":
    main()
