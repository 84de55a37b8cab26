#!/usr/bin/env python3
"""Benchmarks the mirror end to end: Redis with the qsess module, qsess-syncd, PostgreSQL (stdlib only).

It starts its own redis-server and PostgreSQL cluster (as the `postgres` OS user when run as root, with
the stock durable settings), then measures, in one run:
  - the Postgres ceiling: synthetic changes through the daemon's own fold and transaction code
    (syncd/examples/postgres_ceiling.rs), no Redis: half inserts and half updates (the catch-up's mix),
    then updates only (the rate ladder's mix);
  - catch-up throughput: changes queued in the stream while the daemon is stopped, then drained;
  - sustained throughput: a rate ladder (fixed offered rates, each held a few seconds); the highest rate
    whose backlog stays bounded is the sustained rate;
  - saturated throughput: redis-benchmark writing as fast as it can while the daemon mirrors;
  - lag at a steady 5,000 changes per second, from the daemon's qsess_syncd_lag_seconds histogram;
  - bytes per session in Postgres (table, TOAST and indexes, after VACUUM) for a 300-byte payload.
Results go to bench/results/mirror.md and stdout.

Usage: bench/mirror.py [--quick]
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
from qsess_bench.servers import Cluster, Daemon, build, cpu_snapshot, cpu_use, redis_server_version, start_redis
from qsess_bench.workload import USER_AGENT, backlog

QUICK = "--quick" in sys.argv[1:]
ROUNDS = 1 if QUICK else 3
CHANGES = 50_000 if QUICK else 150_000
STEADY_RATE = 5_000
BYTES_SESSIONS = 50_000 if QUICK else 100_000
STEADY_SECONDS = 5 if QUICK else 10
# Offered rates of the rate ladder (changes/s), each held for LADDER_SECONDS.
LADDER_RATES = (30_000, 40_000) if QUICK else (20_000, 30_000, 35_000, 40_000, 45_000, 50_000)
LADDER_SECONDS = 3 if QUICK else 4
# A step is sustained when the generator offered at least LADDER_OFFERED_SHARE of its rate, the daemon
# committed at least LADDER_MIRRORED_SHARE of what was offered, and the backlog at the end is at most
# LADDER_BACKLOG_SECONDS of the rate: the mirror kept up, rather than fell behind slowly enough to
# hide it in a few seconds.
LADDER_OFFERED_SHARE = 0.99
LADDER_MIRRORED_SHARE = 0.98
LADDER_BACKLOG_SECONDS = 0.05
PAYLOAD = "p" * 300


def log(message: str) -> None:
    print(f"mirror-bench: {message}", file=sys.stderr, flush=True)


def session_set(sid: int) -> bytes:
    return Redis.encode(
        "QSESS.SET",
        f"bench-session-{sid}",
        "DATA",
        PAYLOAD,
        "USER",
        f"user-{sid // 10}",
        "IP",
        "203.0.113.7",
        "UA",
        USER_AGENT,
    )


def wait_drained(redis: Redis, timeout: float = 300) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if backlog(redis) == 0:
            return time.monotonic()
        time.sleep(0.01)
    sys.exit("mirror-bench: the daemon did not drain the stream in time")


def queue_changes(redis: Redis, count: int, first_sid: int) -> None:
    for start in range(0, count, 1000):
        redis.pipeline(
            [session_set(first_sid + (sid % (count // 2))) for sid in range(start, min(start + 1000, count))]
        )


def offer_at_rate(redis: Redis, commands: list[bytes], rate: int, seconds: float, first: int = 0) -> float:
    """Sends `commands` (cycling from `first`) at `rate` per second in 10 ms ticks; returns the rate achieved."""
    interval = 0.01
    per_tick = max(1, int(rate * interval))
    start = time.monotonic()
    tick = 0
    sent = 0
    while time.monotonic() - start < seconds:
        batch = [commands[(first + sent + offset) % len(commands)] for offset in range(per_tick)]
        redis.pipeline(batch)
        sent += per_tick
        tick += 1
        delay = start + tick * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    return sent / (time.monotonic() - start)


def rate_ladder(redis: Redis, daemon: Daemon, redis_pid: int, cluster: Cluster) -> list[dict]:
    """Offers each rate of LADDER_RATES for LADDER_SECONDS and records what reached Postgres."""
    commands = [session_set(20_000_000 + sid) for sid in range(100_000)]
    steps = []
    sent = 0
    for rate in LADDER_RATES:
        wait_drained(redis)
        before = daemon.metrics()
        cpu_before = cpu_snapshot(redis_pid, daemon, cluster)
        started = time.monotonic()
        achieved = offer_at_rate(redis, commands, rate, LADDER_SECONDS, first=sent)
        sent += int(achieved * LADDER_SECONDS)
        left = backlog(redis)
        elapsed = time.monotonic() - started
        cpu = cpu_use(cpu_before, cpu_snapshot(redis_pid, daemon, cluster), elapsed)
        after = daemon.metrics()
        mirrored = after.get("qsess_syncd_changes_mirrored_total", 0.0) - before.get(
            "qsess_syncd_changes_mirrored_total", 0.0
        )
        _, p99, _ = lag_quantiles(before, after)
        sustained = (
            achieved >= LADDER_OFFERED_SHARE * rate
            and mirrored / elapsed >= LADDER_MIRRORED_SHARE * achieved
            and left <= LADDER_BACKLOG_SECONDS * rate
        )
        steps.append(
            {
                "rate": rate,
                "achieved": achieved,
                "mirrored": mirrored / elapsed,
                "backlog": left,
                "p99": p99,
                "sustained": sustained,
                "cpu": cpu,
            }
        )
        log(
            f"ladder {rate}/s: offered {achieved:,.0f}/s, mirrored {mirrored / elapsed:,.0f}/s, backlog {left}, "
            f"lag p99 {p99}, {'sustained' if sustained else 'NOT sustained'}, cores "
            + ", ".join(f"{name} {used:.2f}" for name, used in cpu.items())
        )
    wait_drained(redis)
    return steps


def lag_quantiles(before: dict[str, float], after: dict[str, float]) -> tuple[str, str, float]:
    buckets = []
    for name, value in after.items():
        if name.startswith("qsess_syncd_lag_seconds_bucket"):
            bound = name.split('le="')[1].rstrip('"}')
            buckets.append((float("inf") if bound == "+Inf" else float(bound), value - before.get(name, 0.0)))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0

    def quantile(q: float) -> str:
        for bound, count in buckets:
            if count >= q * total:
                return "inf" if bound == float("inf") else f"<= {bound * 1000:g} ms"
        return "n/a"

    return quantile(0.5), quantile(0.99), total


def main() -> None:
    artifacts = build("mirror-bench")
    workdir = Path(tempfile.mkdtemp(prefix="qsess-mirror-bench-"))
    os.chmod(workdir, 0o755)
    redis_process, redis_port = start_redis(artifacts["module"], workdir)
    cluster = Cluster(artifacts["postgres"], "mirror-bench")
    results: list[tuple[str, str]] = []
    ladder_rows: list[dict] = []
    try:
        redis = connect(redis_port, "mirror-bench")
        subprocess.run([artifacts["daemon"], "migrate", "--database-url", cluster.url], check=True, capture_output=True)

        ceilings, update_ceilings, catch_ups = [], [], []
        for round_number in range(ROUNDS):
            log(f"round {round_number + 1}/{ROUNDS}: postgres ceiling")
            cluster.sql("truncate qsess.sessions")
            ceiling = subprocess.run(
                [artifacts["ceiling"], cluster.url, str(CHANGES), "2000"], check=True, capture_output=True, text=True
            ).stdout.strip()
            ceilings.append(float(ceiling))
            # The same sessions again with newer versions: updates only, as in the rate ladder below.
            updates = subprocess.run(
                [artifacts["ceiling"], cluster.url, str(CHANGES), "2000", str(CHANGES)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            update_ceilings.append(float(updates))
            log(f"round {round_number + 1}/{ROUNDS}: catch-up of {CHANGES} queued changes")
            cluster.sql("truncate qsess.sessions")
            redis.call("DEL", "qs:{0}:chg")
            redis.call("XGROUP", "CREATE", "qs:{0}:chg", "qsess-syncd", "$", "MKSTREAM")
            queue_changes(redis, CHANGES, round_number * CHANGES)
            queued = backlog(redis)
            cpu_before = cpu_snapshot(redis_process.pid, None, cluster)
            started = time.monotonic()
            daemon = Daemon(artifacts["daemon"], redis_port, cluster.url, workdir, "mirror-bench")
            finished = wait_drained(redis)
            catch_up_cpu = cpu_use(cpu_before, cpu_snapshot(redis_process.pid, daemon, cluster), finished - started)
            daemon.stop()
            catch_ups.append(queued / (finished - started))
        results.append(
            (
                "postgres ceiling, changes/s (median of rounds, min–max)",
                f"{statistics.median(ceilings):,.0f} ({min(ceilings):,.0f}–{max(ceilings):,.0f})",
            )
        )
        results.append(
            (
                "postgres ceiling, updates of existing rows only, changes/s (median, min–max)",
                f"{statistics.median(update_ceilings):,.0f} ({min(update_ceilings):,.0f}–{max(update_ceilings):,.0f})",
            )
        )
        results.append(
            (
                "catch-up: queued changes mirrored per second (median, min–max)",
                f"{statistics.median(catch_ups):,.0f} ({min(catch_ups):,.0f}–{max(catch_ups):,.0f})",
            )
        )
        ratios = [catch_up / ceiling for catch_up, ceiling in zip(catch_ups, ceilings)]
        results.append(
            (
                "catch-up / postgres ceiling, same round (median, min–max)",
                f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})",
            )
        )
        last_rate = catch_ups[-1]
        results.append(
            (
                "catch-up, last round: cores busy redis / qsess-syncd / postgres",
                " / ".join(f"{catch_up_cpu[name]:.2f}" for name in ("redis", "daemon", "postgres")),
            )
        )
        results.append(
            (
                "catch-up, last round: CPU µs per change redis / qsess-syncd / postgres",
                " / ".join(f"{catch_up_cpu[name] / last_rate * 1e6:.1f}" for name in ("redis", "daemon", "postgres")),
            )
        )

        log("rate ladder: fixed offered rates while the daemon mirrors")
        daemon = Daemon(artifacts["daemon"], redis_port, cluster.url, workdir, "mirror-bench")
        steps = rate_ladder(redis, daemon, redis_process.pid, cluster)
        passed = [step for step in steps if step["sustained"]]
        best = max(passed, key=lambda step: step["rate"]) if passed else None
        results.append(
            (
                "sustained: highest offered rate the mirror kept up with (rate ladder below)",
                f"{best['rate']:,} (offered {best['achieved']:,.0f}/s)" if best else "none of the ladder's rates",
            )
        )
        ladder_rows = steps

        log("saturated: redis-benchmark writing as fast as it can while the daemon mirrors")
        before = daemon.metrics().get("qsess_syncd_changes_mirrored_total", 0.0)
        started = time.monotonic()
        requests = CHANGES
        subprocess.run(
            [
                "redis-benchmark",
                "-p",
                str(redis_port),
                "-c",
                "50",
                "-P",
                "16",
                "-n",
                str(requests),
                "-r",
                "100000",
                "-q",
                "QSESS.SET",
                "bench-load-__rand_int__",
                "DATA",
                PAYLOAD,
                "USER",
                "user-__rand_int__",
                "IP",
                "203.0.113.7",
                "UA",
                USER_AGENT,
            ],
            check=True,
            capture_output=True,
        )
        written = time.monotonic()
        finished = wait_drained(redis)
        mirrored = daemon.metrics().get("qsess_syncd_changes_mirrored_total", 0.0) - before
        results.append(
            (
                "saturated: changes written per second by redis-benchmark (P16, 50 clients)",
                f"{requests / (written - started):,.0f}",
            )
        )
        results.append(
            (
                "saturated: changes mirrored per second, start of load to empty stream",
                f"{mirrored / (finished - started):,.0f}",
            )
        )
        results.append(("saturated: backlog left when the load stopped, drained in", f"{finished - written:.2f} s"))

        log(f"steady {STEADY_RATE}/s for {STEADY_SECONDS} s")
        before_metrics = daemon.metrics()
        interval = 0.01
        per_tick = int(STEADY_RATE * interval)
        start = time.monotonic()
        tick = 0
        while time.monotonic() - start < STEADY_SECONDS:
            redis.pipeline([session_set(10_000_000 + tick * per_tick + offset) for offset in range(per_tick)])
            tick += 1
            next_tick = start + tick * interval
            delay = next_tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        achieved = tick * per_tick / (time.monotonic() - start)
        wait_drained(redis)
        time.sleep(0.3)
        p50, p99, counted = lag_quantiles(before_metrics, daemon.metrics())
        results.append(("steady load: changes per second offered", f"{achieved:,.0f}"))
        results.append(("steady load: lag p50 (redis write to postgres commit, histogram bucket)", p50))
        results.append(("steady load: lag p99", p99))
        daemon.stop()

        log("postgres bytes per session")
        cluster.sql("truncate qsess.sessions")
        redis.call("FLUSHALL")
        daemon = Daemon(artifacts["daemon"], redis_port, cluster.url, workdir, "mirror-bench")
        queue_changes(redis, 2 * BYTES_SESSIONS, 50_000_000)  # BYTES_SESSIONS sessions, each written twice
        wait_drained(redis)
        daemon.stop()
        cluster.sql("vacuum (full, analyze) qsess.sessions")
        rows = int(cluster.value("select count(*) from qsess.sessions"))
        size = int(cluster.value("select pg_total_relation_size('qsess.sessions')"))
        table = int(cluster.value("select pg_table_size('qsess.sessions')"))
        indexes = int(cluster.value("select pg_indexes_size('qsess.sessions')"))
        results.append(("postgres: rows", f"{rows:,}"))
        results.append(
            (
                "postgres: bytes per session, table + TOAST + indexes, after VACUUM FULL",
                f"{size / rows:.0f} (table {table / rows:.0f}, indexes {indexes / rows:.0f})",
            )
        )
    finally:
        redis_process.terminate()
        redis_process.wait(timeout=30)
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    cores = os.cpu_count()
    redis_version = redis_server_version()
    pg_version = cluster.postgres_version()
    lines = [
        "# Mirror benchmark",
        "",
        f"Command: `bench/mirror.py{' --quick' if QUICK else ''}`; {ROUNDS} round(s), {CHANGES:,} changes per round, "
        f"300-byte payload, 110-byte user agent; PostgreSQL with stock durable settings.",
        f"Machine: {cores} cores, Redis {redis_version}, {pg_version}; Redis, PostgreSQL, the daemon and the load "
        "generator share the cores.",
        "",
        "| measure | value |",
        "|---|---|",
        *[f"| {name} | {value} |" for name, value in results],
        "",
        f"Rate ladder: a Python client offers QSESS.SET (100,000 sessions, cycling) at each rate for "
        f"{LADDER_SECONDS} s in 10 ms ticks while the daemon mirrors; the stream is drained between steps. A step "
        f"is sustained when at least {LADDER_OFFERED_SHARE:.0%} of the rate was offered, at least "
        f"{LADDER_MIRRORED_SHARE:.0%} of what was offered was mirrored during the step, and the backlog at its end "
        f"(pending + undelivered entries) is at most {LADDER_BACKLOG_SECONDS * 1000:.0f} ms of the rate. "
        "Mirrored/s = changes the "
        "daemon committed during the step / its length; lag p99 is the bucket bound of the daemon's "
        "`qsess_syncd_lag_seconds` histogram (Redis write to Postgres commit) for the step.",
        "",
        "| offered rate | achieved offered/s | mirrored/s | backlog at the end | lag p99 | sustained | "
        "cores busy: redis / qsess-syncd / postgres / generator / all |",
        "|---:|---:|---:|---:|---|---|---|",
        *[
            f"| {step['rate']:,} | {step['achieved']:,.0f} | {step['mirrored']:,.0f} | {step['backlog']:,} | "
            f"{step['p99']} | {'yes' if step['sustained'] else 'no'} | "
            + " / ".join(f"{used:.2f}" for used in step["cpu"].values())
            + f" / {sum(step['cpu'].values()):.2f} |"
            for step in ladder_rows
        ],
        "",
    ]
    publish("mirror.md", "\n".join(lines))


if __name__ == "__main__":
    main()
