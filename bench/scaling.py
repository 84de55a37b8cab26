#!/usr/bin/env python3
"""How cost grows (Python 3.11 standard library only).

It starts its own redis-server(s) with the qsess module on free loopback ports and measures:
  - QSESS.BYUSER uid WITHMETA and QSESS.REVOKEUSER uid against Lua equivalents on plain keys
    (bench/byuser.lua, bench/revokeuser.lua over what bench/session_write.lua writes) for users with
    1, 10, 100 and 1000 sessions: one client, one call in flight, each call timed from send to reply,
    qsess and Lua alternating user by user (A, B, B, A, ...); every REVOKEUSER call ends a fresh user;
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.dont_write_bytecode = True
import mirror  # noqa: E402  (build, start_redis, connect_redis, the RESP client)
from mirror import Redis  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
QUICK = "--quick" in sys.argv[1:]
# users timed per size (each user is one BYUSER call and one REVOKEUSER call per side)
CALLS = {1: 150, 10: 150, 100: 40, 1000: 8} if QUICK else {1: 600, 10: 600, 100: 150, 1000: 30}
SMALL, LARGE = 10_000, (200_000 if QUICK else 1_000_000)
GET_ROUNDS = 1 if QUICK else 3
GET_REQUESTS = 200_000 if QUICK else 600_000
PAYLOAD = "p" * 300
IP = "203.0.113.7"


def log(message: str) -> None:
    print(f"scaling-bench: {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def script(redis: Redis, name: str) -> str:
    return redis.call("SCRIPT", "LOAD", (ROOT / "bench" / name).read_text()).decode()


def fill(redis: Redis, size: int, users: int, write_sha: str) -> None:
    commands = []
    for user in range(users):
        uid = f"sc{size}-u{user}"
        for k in range(size):
            sid = f"sc{size}-u{user}-s{k}"
            commands.append(Redis.encode("QSESS.SET", sid, "DATA", PAYLOAD, "USER", uid, "IP", IP,
                                         "UA", mirror.USER_AGENT))
            commands.append(Redis.encode("EVALSHA", write_sha, 3, f"bl:s:{sid}", f"bl:u:{uid}", "bl:chg", PAYLOAD,
                                         IP, mirror.USER_AGENT, 1_800_000, 86_400_000))
            if len(commands) >= 2000:
                redis.pipeline(commands)
                commands = []
    if commands:
        redis.pipeline(commands)
    redis.call("DEL", "qs:{0}:chg", "bl:chg")


def timed(redis: Redis, command: bytes):
    started = time.perf_counter_ns()
    redis.socket.sendall(command)
    reply = redis.read()
    return (time.perf_counter_ns() - started) / 1000, reply


def spread(values: list[float], form: str = ",.0f") -> str:
    return f"{format(statistics.median(values), form)} ({format(min(values), form)}–{format(max(values), form)})"


def per_user(redis: Redis, size: int, users: int, kind: str, sha: str) -> tuple[list[float], list[float]]:
    qs, lua = [], []
    for user in range(users):
        uid = f"sc{size}-u{user}"
        if kind == "byuser":
            a = Redis.encode("QSESS.BYUSER", uid, "WITHMETA")
            b = Redis.encode("EVALSHA", sha, 1, f"bl:u:{uid}", "bl:s:")
        else:
            a = Redis.encode("QSESS.REVOKEUSER", uid)
            b = Redis.encode("EVALSHA", sha, 2, f"bl:u:{uid}", "bl:chg", "bl:s:")
        order = ((a, qs), (b, lua)) if user % 2 == 0 else ((b, lua), (a, qs))
        for command, into in order:
            micros, reply = timed(redis, command)
            count = len(reply) if isinstance(reply, list) else reply
            if count != size:
                sys.exit(f"scaling-bench: {kind} of {uid} answered {count} sessions, expected {size}")
            into.append(micros)
    return qs, lua


def block_ratios(qs: list[float], lua: list[float]) -> list[float]:
    """Lua median / qsess median in each third of the calls (speed-up of qsess; > 1 means qsess is faster)."""
    third = max(1, len(qs) // 3)
    ratios = []
    for start in range(0, third * 3, third):
        ratios.append(statistics.median(lua[start:start + third]) / statistics.median(qs[start:start + third]))
    return ratios


def load_gets(redis: Redis, count: int) -> None:
    for start in range(0, count, 2000):
        redis.pipeline([Redis.encode("QSESS.SET", f"sid:{i:012d}", "DATA", PAYLOAD, "USER", f"user:{i // 10:012d}",
                                     "IP", IP, "UA", mirror.USER_AGENT) for i in range(start, min(start + 2000, count))])
        if start % 100_000 == 0:
            redis.call("DEL", "qs:{0}:chg")
    redis.call("DEL", "qs:{0}:chg")


def get_rps(port: int, keyspace: int) -> float:
    out = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-q", "--csv", "-c", "50", "-P", "16",
                          "-r", str(keyspace), "-n", str(GET_REQUESTS), "QSESS.GET", "sid:__rand_int__"],
                         check=True, capture_output=True, text=True).stdout
    rows = [line.split('","') for line in out.splitlines() if line.startswith('"') and not line.startswith('"test"')]
    return float(rows[-1][1].strip('"'))


def main() -> None:
    started = time.monotonic()
    artifacts = mirror.build()
    workdir = Path(tempfile.mkdtemp(prefix="qsess-scaling-bench-"))
    os.chmod(workdir, 0o755)
    processes = []
    rows, get_rows = [], []
    try:
        (workdir / "a").mkdir()
        process, port = mirror.start_redis(artifacts["module"], workdir / "a")
        processes.append(process)
        redis = mirror.connect_redis(port)
        write_sha, byuser_sha, revoke_sha = (script(redis, n) for n in
                                             ("session_write.lua", "byuser.lua", "revokeuser.lua"))
        for size, users in CALLS.items():
            log(f"{users} users with {size} sessions each, qsess and Lua")
            fill(redis, size, users, write_sha)
            for kind, sha, title in (("byuser", byuser_sha, "QSESS.BYUSER WITHMETA"),
                                     ("revokeuser", revoke_sha, "QSESS.REVOKEUSER")):
                qs, lua = per_user(redis, size, users, kind, sha)
                ratios = block_ratios(qs, lua)
                rows.append((title, size, users, spread(qs), spread(lua), ratios))
            redis.call("DEL", "qs:{0}:chg", "bl:chg")
        redis.call("FLUSHALL")

        log(f"QSESS.GET: {SMALL:,} sessions on one server, {LARGE:,} on another")
        (workdir / "b").mkdir()
        process_b, port_b = mirror.start_redis(artifacts["module"], workdir / "b")
        processes.append(process_b)
        redis_b = mirror.connect_redis(port_b)
        servers = [(redis, port, SMALL), (redis_b, port_b, LARGE)]
        for client, _, count in servers:
            client.call("CONFIG", "SET", "qsess.touch-granularity-ms", 86_400_000)  # GETs stay reads
            load_gets(client, count)
        memory = [int(dict(line.split(":", 1) for line in client.call("INFO", "memory").decode().split("\r\n")
                               if ":" in line)["used_memory"]) for client, _, _ in servers]
        small, large = [], []
        for round_number in range(GET_ROUNDS):
            order = servers if round_number % 2 == 0 else servers[::-1]
            for client, server_port, count in order:
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
        "Per size, users are filled with that many sessions twice: with `QSESS.SET` and with "
        "`bench/session_write.lua` (plain hash + ZSET index + stream). Each user then gets one "
        "`QSESS.BYUSER uid WITHMETA` and one `bench/byuser.lua` call (ZRANGEBYSCORE + HGETALL per member), "
        "then one `QSESS.REVOKEUSER uid` and one `bench/revokeuser.lua` call (ZRANGE + DEL + XADD per member, "
        "DEL index; it writes no tombstones, unlike qsess), alternating which goes first. One client, one call "
        "in flight, µs from send to reply (includes the Python client's parsing of the reply). "
        "Speed-up = Lua median / qsess median in each third of the calls: median (min, max) of the three; "
        "> 1 means qsess is faster.",
        "",
        "| command | sessions per user | qsess µs median (min–max) | Lua µs median (min–max) | "
        "speed-up median | min | max | users timed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *[f"| {title} | {size} | {qs} | {lua} | {statistics.median(r):.2f} | {min(r):.2f} | {max(r):.2f} | {users} |"
          for title, size, users, qs, lua, r in rows],
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
    report = "\n".join(lines)
    out = ROOT / "bench" / "results" / "scaling.md"
    out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
