#!/usr/bin/env python3
"""Benchmarks read-through: a QSESS.GET that misses in Redis while qsess-syncd runs waits for the daemon
to restore the session from PostgreSQL (stdlib only).

It reuses bench/mirror.py's pieces (release build via cargo's JSON, its own redis-server with the module on
a free loopback port, its own PostgreSQL cluster with stock settings, `qsess-syncd migrate`, the daemon with
--metrics-addr, the tiny RESP client) and measures, in each round:
  - miss-to-answer latency with one waiting client: sessions are created and mirrored, then for each one
    its record key is deleted (as if Redis had lost it) and one QSESS.GET is timed from send to reply;
    the baseline is a QSESS.GET hit of the same, still present, session on the same connection just before;
  - reloads per second with many concurrent misses: many record keys are deleted at once, then 50
    connections, each pipelining 20 QSESS.GETs of distinct missing sessions, read them all back.
Results go to bench/results/read_through.md and stdout.

Usage: bench/read_through.py [--quick]
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from qsess_bench.resp import Redis, connect
from qsess_bench.results import publish
from qsess_bench.servers import Cluster, Daemon, build, cpu_snapshot, cpu_use, redis_server_version, start_redis
from qsess_bench.stats import nearest_rank, spread
from qsess_bench.workload import USER_AGENT, backlog

ROOT = Path(__file__).resolve().parent.parent
QUICK = "--quick" in sys.argv[1:]
ROUNDS = 1 if QUICK else 3
LATENCY_SESSIONS = 2_000
LOAD_SESSIONS = 20_000
LOAD_CLIENTS = 50
LOAD_DEPTH = 20  # GETs each connection pipelines before reading their replies
LATENCY_MISS_TIMEOUT_MS = 250  # the module's default: what a production client waits at most
LOAD_MISS_TIMEOUT_MS = 2_000  # so that timeouts cannot cut the load test short
PAYLOAD = "p" * 300
TARGET_P50_MS = 0.5
TARGET_P99_MS = 2.0
TARGET_RELOADS_PER_SECOND = 10_000


def log(message: str) -> None:
    print(f"read-through-bench: {message}", file=sys.stderr, flush=True)


def handle(sid: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(sid.encode()).digest()[:16]).rstrip(b"=").decode()


def record_key(sid: str) -> str:
    return f"qs:{{0}}:s:{handle(sid)}"


def session_set(sid: str, user: str) -> bytes:
    return Redis.encode("QSESS.SET", sid, "DATA", PAYLOAD, "USER", user, "IP", "203.0.113.7", "UA", USER_AGENT)


def new_sessions(count: int) -> list[str]:
    """Ids shaped like minted ones (32 random base64url characters)."""
    return [secrets.token_urlsafe(24) for _ in range(count)]


def create(redis: Redis, sids: list[str], tag: str) -> None:
    for start in range(0, len(sids), 1000):
        redis.pipeline(
            [
                session_set(sid, f"{tag}-user-{(start + offset) // 10}")
                for offset, sid in enumerate(sids[start : start + 1000])
            ]
        )


def delete_records(redis: Redis, sids: list[str]) -> None:
    for start in range(0, len(sids), 1000):
        redis.pipeline([Redis.encode("DEL", record_key(sid)) for sid in sids[start : start + 1000]])


def wait_mirrored(redis: Redis, cluster: Cluster, rows: int, timeout: float = 120) -> None:
    """Until the consumer group has nothing pending or unread and Postgres holds `rows` sessions."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if backlog(redis) == 0 and int(cluster.value("select count(*) from qsess.sessions")) >= rows:
            return
        time.sleep(0.05)
    sys.exit("read-through-bench: the daemon did not mirror the sessions in time")


def info(redis: Redis) -> dict[str, str]:
    fields = {}
    for line in redis.call("INFO", "qsess").decode().splitlines():
        name, colon, value = line.partition(":")
        if colon:
            fields[name] = value.strip()
    return fields


def counter(before: dict[str, str], after: dict[str, str], name: str) -> int:
    return int(after.get(name, 0)) - int(before.get(name, 0))


def wait_attached(redis: Redis, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if info(redis).get("qsess_loader_attached") == "1":
            return
        time.sleep(0.05)
    sys.exit("read-through-bench: qsess-syncd did not attach as the loader; see syncd.log")


def as_record(reply) -> dict[bytes, object] | None:
    if not isinstance(reply, list):
        return None
    return dict(zip(reply[::2], reply[1::2]))


def is_the_record(reply, sid: str) -> bool:
    record = as_record(reply)
    return (
        record is not None and record.get(b"handle") == handle(sid).encode() and record.get(b"data") == PAYLOAD.encode()
    )


def measure_latency(redis: Redis, sids: list[str]) -> dict[str, float]:
    """Per session: a timed GET hit, then DEL of its record, then a timed GET that must wait for the reload."""
    hits, misses, wrong = [], [], 0
    for sid in sids:
        get = Redis.encode("QSESS.GET", sid)
        started = time.perf_counter_ns()
        redis.socket.sendall(get)
        reply = redis.read()
        hits.append(time.perf_counter_ns() - started)
        wrong += not is_the_record(reply, sid)
        redis.call("DEL", record_key(sid))
        started = time.perf_counter_ns()
        redis.socket.sendall(get)
        reply = redis.read()
        misses.append(time.perf_counter_ns() - started)
        wrong += not is_the_record(reply, sid)
    hits.sort()
    misses.sort()
    ms = 1e-6
    return {
        "hit_p50": nearest_rank(hits, 0.5) * ms,
        "hit_p99": nearest_rank(hits, 0.99) * ms,
        "hit_max": hits[-1] * ms,
        "miss_p50": nearest_rank(misses, 0.5) * ms,
        "miss_p99": nearest_rank(misses, 0.99) * ms,
        "miss_max": misses[-1] * ms,
        "wrong": wrong,
    }


def skip_replies(buffer: bytearray, position: int, found: list[bool]) -> int:
    """Consumes every complete RESP2 reply in buffer[position:], appending True (a record) or False (nil or
    an error) for each; returns where the first incomplete reply starts."""
    size = len(buffer)
    while True:
        start, pending, first, is_record = position, 1, True, False
        while pending:
            end = buffer.find(b"\r\n", position)
            if end < 0:
                return start
            kind = buffer[position]
            if kind == 0x24:  # $ bulk string
                length = int(buffer[position + 1 : end])
                position = end + 2 + (length + 2 if length >= 0 else 0)
                if position > size:
                    return start
            elif kind == 0x2A:  # * array
                length = int(buffer[position + 1 : end])
                if first and length > 0:
                    is_record = True
                pending += max(length, 0)
                position = end + 2
            else:  # + - : simple replies
                position = end + 2
            pending -= 1
            first = False
        found.append(is_record)


def load(port: int, sids: list[str]) -> dict[str, float]:
    """LOAD_CLIENTS connections, each sending LOAD_DEPTH GETs of distinct missing sessions at a time and
    reading their replies before sending the next ones; one thread multiplexes them with a selector."""
    selector = selectors.DefaultSelector()
    connections = []
    for index in range(LOAD_CLIENTS):
        connection = socket.create_connection(("127.0.0.1", port))
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        mine = sids[index::LOAD_CLIENTS]
        commands = [Redis.encode("QSESS.GET", sid) for sid in mine]
        state = {
            "socket": connection,
            "commands": commands,
            "sent": 0,
            "outstanding": 0,
            "buffer": bytearray(),
            "position": 0,
        }
        connections.append(state)
    found: list[bool] = []

    def send_next(state) -> bool:
        batch = state["commands"][state["sent"] : state["sent"] + LOAD_DEPTH]
        if not batch:
            return False
        state["socket"].sendall(b"".join(batch))
        state["sent"] += len(batch)
        state["outstanding"] = len(batch)
        return True

    started = time.perf_counter()
    active = 0
    for state in connections:
        if send_next(state):
            selector.register(state["socket"], selectors.EVENT_READ, state)
            active += 1
    while active:
        for key, _ in selector.select():
            state = key.data
            data = state["socket"].recv(1 << 20)
            if not data:
                sys.exit("read-through-bench: redis closed a load connection")
            buffer = state["buffer"]
            buffer += data
            before = len(found)
            state["position"] = skip_replies(buffer, state["position"], found)
            state["outstanding"] -= len(found) - before
            if state["position"] > 1 << 16:
                del buffer[: state["position"]]
                state["position"] = 0
            if state["outstanding"] == 0 and not send_next(state):
                selector.unregister(state["socket"])
                active -= 1
    elapsed = time.perf_counter() - started
    for state in connections:
        state["socket"].close()
    selector.close()
    records = sum(found)
    return {"seconds": elapsed, "records": records, "nil": len(found) - records, "replies": len(found)}


def metric_delta(before: dict[str, float], after: dict[str, float], name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


def index_reads(redis: Redis, cluster: Cluster) -> dict[str, float]:
    """Index entries read from qsess.sessions' indexes so far, by index. A backend publishes its statistics at
    the end of a transaction at most once a second (else within 10 s of going idle), so this first waits a
    second and makes the loader run one query (a miss of an id that never existed, answered nil)."""
    time.sleep(1.1)
    if redis.call("QSESS.GET", f"read-through-bench-probe-{secrets.token_urlsafe(12)}") is not None:
        sys.exit("read-through-bench: the probe id exists")
    rows = cluster.value(
        "select indexrelname || ' ' || idx_tup_read from pg_stat_user_indexes "
        "where schemaname = 'qsess' and relname = 'sessions'"
    )
    return {name: float(value) for name, value in (line.split() for line in rows.splitlines())}


def loader_constants() -> str:
    source = (ROOT / "syncd" / "src" / "reload.rs").read_text()
    block = re.search(r"READ_BLOCK: Duration = Duration::from_millis\((\d+)\)", source)
    batch = re.search(r"MAX_BATCH: usize = ([\d_]+);", source)
    return (
        f"XREAD BLOCK {block.group(1) if block else '?'} ms, at most {batch.group(1) if batch else '?'} "
        "misses per SELECT + RESTORE pipeline, one batch at a time"
    )


def walked_notes(rounds: list[dict]) -> list[str]:
    """A note for each index the loader's SELECT walked instead of probing (more than 100 entries per reload)."""
    notes = []
    for name in sorted({name for r in rounds for name in r["index_reads"]}):
        walked = [
            (number, r["index_reads"].get(name, 0.0), r["rows"])
            for number, r in enumerate(rounds, start=1)
            if r["index_reads"].get(name, 0.0) > 100
        ]
        if walked:
            notes.append(
                f"Note: in round(s) {', '.join(str(number) for number, _, _ in walked)} the loader's "
                f"`SELECT ... where handle = any($1) and ended_at is null and expires_at > now()` read "
                f"{' / '.join(f'{reads:,.0f}' for _, reads, _ in walked)} entries of `{name}` per reload "
                f"(live rows: {' / '.join(f'{rows:,.0f}' for _, _, rows in walked)}), i.e. it walked that "
                "index instead of looking the handles up in `sessions_pkey`; the cost of a reload then grows "
                "with the size of the mirror (`pg_stat_user_indexes`, divided by the loader's batches)."
            )
    return notes + ([""] if notes else [])


def main() -> None:
    run_started = time.monotonic()
    artifacts = build("read-through-bench")
    workdir = Path(tempfile.mkdtemp(prefix="qsess-read-through-bench-"))
    os.chmod(workdir, 0o755)
    redis_process, redis_port = start_redis(artifacts["module"], workdir)
    cluster = None
    daemon = None
    rounds: list[dict] = []
    totals: dict[str, str] = {}
    try:
        cluster = Cluster(artifacts["postgres"], "read-through-bench")
        redis = connect(redis_port, "read-through-bench")
        subprocess.run([artifacts["daemon"], "migrate", "--database-url", cluster.url], check=True, capture_output=True)
        daemon = Daemon(artifacts["daemon"], redis_port, cluster.url, workdir, "read-through-bench")
        wait_attached(redis)
        negative_cache_ms = redis.call("CONFIG", "GET", "qsess.negative-cache-ms")[1].decode()
        buckets = redis.call("CONFIG", "GET", "qsess.buckets")[1].decode()
        mirrored_rows = 0
        for round_number in range(ROUNDS):
            tag = f"r{round_number}"
            result: dict = {}
            latency_sids = new_sessions(LATENCY_SESSIONS)
            load_sids = new_sessions(LOAD_SESSIONS)
            log(f"round {round_number + 1}/{ROUNDS}: creating {LATENCY_SESSIONS + LOAD_SESSIONS:,} sessions")
            create(redis, latency_sids + load_sids, tag)
            mirrored_rows += LATENCY_SESSIONS + LOAD_SESSIONS
            wait_mirrored(redis, cluster, mirrored_rows)

            log(f"round {round_number + 1}/{ROUNDS}: latency, {LATENCY_SESSIONS:,} misses one at a time")
            redis.call("CONFIG", "SET", "qsess.miss-timeout-ms", LATENCY_MISS_TIMEOUT_MS)
            result["rows"] = float(cluster.value("select count(*) from qsess.live_sessions"))
            reads_before = index_reads(redis, cluster)
            before, metrics_before = info(redis), daemon.metrics()
            result.update(measure_latency(redis, latency_sids))
            after, metrics_after = info(redis), daemon.metrics()
            reads_after = index_reads(redis, cluster)
            batches = metric_delta(metrics_before, metrics_after, "qsess_syncd_reload_seconds_count")
            result["latency_batch_ms"] = (
                metric_delta(metrics_before, metrics_after, "qsess_syncd_reload_seconds_sum") / batches * 1000
                if batches
                else 0.0
            )
            # One loader query per batch, plus the probe that published the statistics.
            result["index_reads"] = {
                name: (reads_after.get(name, 0.0) - reads_before.get(name, 0.0)) / (batches + 1) for name in reads_after
            }
            result["latency_restores"] = counter(before, after, "qsess_restores")
            result["latency_requests"] = counter(before, after, "qsess_reload_requests")
            result["latency_timeouts"] = counter(before, after, "qsess_miss_timeouts")

            log(
                f"round {round_number + 1}/{ROUNDS}: load, {LOAD_SESSIONS:,} records dropped at once, "
                f"{LOAD_CLIENTS} clients × {LOAD_DEPTH} pipelined GETs"
            )
            redis.call("CONFIG", "SET", "qsess.miss-timeout-ms", LOAD_MISS_TIMEOUT_MS)
            delete_records(redis, load_sids)
            before, metrics_before = info(redis), daemon.metrics()
            cpu_before = cpu_snapshot(redis_process.pid, daemon, cluster)
            result.update(load(redis_port, load_sids))
            cpu_after = cpu_snapshot(redis_process.pid, daemon, cluster)
            after, metrics_after = info(redis), daemon.metrics()
            # What bounds the rate on shared cores: CPU per restored session of every part, and cores busy.
            result["cpu_per_reload_us"] = {
                name: (cpu_after[name] - cpu_before[name]) / max(result["records"], 1) * 1e6 for name in cpu_before
            }
            result["cores_busy"] = sum(cpu_use(cpu_before, cpu_after, result["seconds"]).values())
            redis.call("CONFIG", "SET", "qsess.miss-timeout-ms", LATENCY_MISS_TIMEOUT_MS)
            result["load_restores"] = counter(before, after, "qsess_restores")
            result["load_requests"] = counter(before, after, "qsess_reload_requests")
            result["load_timeouts"] = counter(before, after, "qsess_miss_timeouts")
            result["rate"] = result["records"] / result["seconds"]
            batches = metric_delta(metrics_before, metrics_after, "qsess_syncd_reload_seconds_count")
            batch_seconds = metric_delta(metrics_before, metrics_after, "qsess_syncd_reload_seconds_sum")
            answered = sum(
                value - metrics_before.get(name, 0.0)
                for name, value in metrics_after.items()
                if name.startswith("qsess_syncd_reloads_total")
            )
            result["batches"] = batches
            result["batch_size"] = answered / batches if batches else 0.0
            result["batch_ms"] = batch_seconds / batches * 1000 if batches else 0.0
            present = 0
            for start in range(0, LOAD_SESSIONS, 1000):
                redis.socket.sendall(
                    b"".join(Redis.encode("EXISTS", record_key(sid)) for sid in load_sids[start : start + 1000])
                )
                present += sum(redis.read() for _ in load_sids[start : start + 1000])
            result["present_after"] = present
            totals = after
            rounds.append(result)
            log(
                f"round {round_number + 1}/{ROUNDS}: miss p50 {result['miss_p50']:.3f} ms, p99 "
                f"{result['miss_p99']:.3f} ms; {result['rate']:,.0f} reloads/s, {result['nil']} nil"
            )
    finally:
        if daemon is not None:
            daemon.stop()
        redis_process.terminate()
        redis_process.wait(timeout=30)
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    def column(name: str) -> list[float]:
        return [result[name] for result in rounds]

    def verdict(met: bool) -> str:
        return "met" if met else "**missed**"

    p50, p99, rate = column("miss_p50"), column("miss_p99"), column("rate")
    rows = [
        (
            "miss-to-answer p50, ms (median of rounds, min–max)",
            spread(p50, ".3f"),
            f"< {TARGET_P50_MS}",
            verdict(statistics.median(p50) < TARGET_P50_MS),
        ),
        (
            "miss-to-answer p99, ms",
            spread(p99, ".3f"),
            f"< {TARGET_P99_MS}",
            verdict(statistics.median(p99) < TARGET_P99_MS),
        ),
        ("miss-to-answer max, ms", spread(column("miss_max"), ".3f"), "", ""),
        (
            "baseline: GET hit p50, ms (same client, same session, just before)",
            spread(column("hit_p50"), ".3f"),
            "",
            "",
        ),
        ("baseline: GET hit p99, ms", spread(column("hit_p99"), ".3f"), "", ""),
        ("baseline: GET hit max, ms", spread(column("hit_max"), ".3f"), "", ""),
        (
            "cost of the reload at p50 (miss p50 − hit p50), ms",
            spread([miss - hit for miss, hit in zip(p50, column("hit_p50"))], ".3f"),
            "",
            "",
        ),
        (
            "latency: replies that were not the record (all rounds)",
            f"{sum(column('wrong')):.0f} of {2 * LATENCY_SESSIONS * ROUNDS:,} (hits and misses)",
            "0",
            verdict(sum(column("wrong")) == 0),
        ),
        (
            "latency: INFO qsess_reload_requests / qsess_restores / qsess_miss_timeouts per round",
            " ; ".join(
                f"{r['latency_requests']:.0f} / {r['latency_restores']:.0f} / {r['latency_timeouts']:.0f}"
                for r in rounds
            ),
            f"{LATENCY_SESSIONS:,} / {LATENCY_SESSIONS:,} / 0",
            "",
        ),
        (
            f"load: sessions restored per second, {LOAD_CLIENTS} clients × {LOAD_DEPTH} pipelined GETs",
            spread(rate, ",.0f"),
            f"≥ {TARGET_RELOADS_PER_SECOND:,}",
            verdict(statistics.median(rate) >= TARGET_RELOADS_PER_SECOND),
        ),
        ("load: wall time for all GETs, s", spread(column("seconds"), ".2f"), "", ""),
        (
            "load: CPU µs per restored session, redis / qsess-syncd / postgres / load client (median of rounds)",
            " / ".join(
                f"{statistics.median(r['cpu_per_reload_us'][name] for r in rounds):.1f}"
                for name in ("redis", "daemon", "postgres", "generator")
            ),
            "",
            "",
        ),
        (
            "load: CPU µs per restored session, all parts (median of rounds, min–max)",
            spread([sum(r["cpu_per_reload_us"].values()) for r in rounds], ".1f"),
            "",
            "",
        ),
        (
            f"load: cores busy, all parts ({os.cpu_count()} cores)",
            spread(column("cores_busy"), ".2f"),
            "",
            "",
        ),
        (
            "load: replies that came back nil (all rounds)",
            f"{sum(column('nil')):.0f} of {sum(column('replies')):,.0f}",
            "0",
            verdict(sum(column("nil")) == 0),
        ),
        (
            "load: INFO qsess_reload_requests / qsess_restores / qsess_miss_timeouts per round",
            " ; ".join(
                f"{r['load_requests']:.0f} / {r['load_restores']:.0f} / {r['load_timeouts']:.0f}" for r in rounds
            ),
            f"{LOAD_SESSIONS:,} / {LOAD_SESSIONS:,} / 0",
            "",
        ),
        (
            "load: record keys present again afterwards (EXISTS) per round",
            " ; ".join(f"{r['present_after']:,.0f}" for r in rounds),
            f"{LOAD_SESSIONS:,}",
            "",
        ),
        (
            "load: daemon batches (qsess_syncd_reload_seconds count) per round",
            " ; ".join(f"{r['batches']:,.0f}" for r in rounds),
            "",
            "",
        ),
        ("load: misses per daemon batch, mean", spread(column("batch_size"), ".1f"), "", ""),
        ("load: daemon time per batch (SELECT + RESTORE pipeline), mean ms", spread(column("batch_ms"), ".2f"), "", ""),
        (
            "INFO qsess after the run: qsess_reload_requests / qsess_restores",
            f"{totals.get('qsess_reload_requests')} / {totals.get('qsess_restores')}",
            "",
            "",
        ),
    ]
    cores = os.cpu_count()
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    redis_version = redis_server_version()
    pg_version = cluster.postgres_version()
    lines = [
        "# Read-through benchmark",
        "",
        f"Command: `python3 bench/read_through.py{' --quick' if QUICK else ''}`; {ROUNDS} round(s), "
        f"{time.monotonic() - run_started:.0f} s including the build; medians of the rounds with min–max.",
        f"Machine: nproc {nproc} (os.cpu_count {cores}), Redis {redis_version}, {pg_version}; Redis, PostgreSQL, "
        "qsess-syncd and the Python clients share the cores; load average at the end "
        f"{' '.join(f'{load:.2f}' for load in os.getloadavg())}.",
        "",
        f"Per round: {LATENCY_SESSIONS:,} sessions for the latency test and {LOAD_SESSIONS:,} for the load test, "
        f"each with a 300-byte DATA, USER, IP and a {len(USER_AGENT)}-byte UA, all mirrored before "
        "anything is deleted (consumer group pending 0 and lag 0, rows counted in qsess.sessions).",
        "",
        "- Latency: for each session, a `QSESS.GET` hit is timed (the baseline), its record key "
        "`qs:{0}:s:<handle>` is deleted, and a `QSESS.GET` is timed from send to reply "
        "(`time.perf_counter_ns`, one client, one request in flight, replies parsed and checked).",
        f"- Load: the {LOAD_SESSIONS:,} record keys are deleted in pipelines, then {LOAD_CLIENTS} connections "
        f"(one Python thread, a selector) each send {LOAD_DEPTH} `QSESS.GET`s of distinct missing sessions, "
        "read the replies, and send the next ones; the rate is records returned / wall time from the first send "
        "to the last reply. Redis runs a connection's pipelined commands in order and does not start the next "
        f"while one is blocked, so at most {LOAD_CLIENTS} misses wait at once.",
        "",
        f"Settings: `qsess.miss-timeout-ms` {LATENCY_MISS_TIMEOUT_MS} (the default) for the latency test and "
        f"{LOAD_MISS_TIMEOUT_MS} for the load test; `qsess.negative-cache-ms` {negative_cache_ms}; "
        f"`qsess.buckets` {buckets}; qsess-syncd defaults (loader: {loader_constants()}); PostgreSQL stock "
        "settings; redis-server without persistence.",
        "",
        "| measure | value | target | verdict |",
        "|---|---|---|---|",
        *[f"| {name} | {value} | {target} | {met} |" for name, value, target, met in rows],
        "",
        "Per round (each round adds its sessions to the same Redis and mirror, so the mirror grows):",
        "",
        "| round | live rows in qsess.sessions | miss p50 / p99, ms | hit p50, ms | loader time per reload, ms "
        "(latency test) | index entries the loader's SELECT read per reload | load: reloads/s | load: misses per "
        "batch, ms per batch |",
        "|---|---|---|---|---|---|---|---|",
        *[
            f"| {number} | {r['rows']:,.0f} | {r['miss_p50']:.3f} / {r['miss_p99']:.3f} | {r['hit_p50']:.3f} | "
            f"{r['latency_batch_ms']:.3f} | "
            + ", ".join(f"{name} {reads:,.0f}" for name, reads in sorted(r["index_reads"].items()))
            + f" | {r['rate']:,.0f} | {r['batch_size']:.1f}, {r['batch_ms']:.2f} |"
            for number, r in enumerate(rounds, start=1)
        ],
        "",
        *walked_notes(rounds),
    ]
    publish("read_through.md", "\n".join(lines))


if __name__ == "__main__":
    main()
