#!/usr/bin/env python3
"""A/B of qsess-syncd builds on the mirror's catch-up, each round against the Postgres ceiling of that round.

bench/mirror.py measures one build; comparing two builds across its runs drowns in this 2-core machine's
noise (the ceiling alone moved 47k-105k/s between runs). This script alternates daemon binaries round by
round in one Redis and one PostgreSQL, as bench/mirror.py's catch-up does (CHANGES changes over
CHANGES/2 sessions queued with the daemon stopped, then drained), and prints per round the ceiling
(syncd/examples/postgres_ceiling.rs, same changes), the catch-up rate, their ratio and the CPU µs per
change of redis-server, the daemon and PostgreSQL; then per binary the median (min-max) of the ratios
and of the daemon's CPU per change. With PERF=<file> the last round runs under `perf record`.

Usage: bench/mirror_ab.py [--rounds N] [--changes N] [--bytes] <qsess-syncd> [<qsess-syncd> ...]
  (no binary: the tree's release build; --bytes: also Postgres bytes per session as bench/mirror.py)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import mirror
from qsess_bench.resp import connect
from qsess_bench.servers import Cluster, Daemon, build, start_redis
from qsess_bench.workload import backlog


def spread(values: list[float], digits: int) -> str:
    return f"{statistics.median(values):,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--changes", type=int, default=100_000)
    parser.add_argument("--bytes", action="store_true")
    parser.add_argument("daemons", nargs="*")
    options = parser.parse_args()
    artifacts = build("mirror-ab")
    daemons = options.daemons or [artifacts["daemon"]]
    perf_output = os.environ.get("PERF")
    workdir = Path(tempfile.mkdtemp(prefix="qsess-mirror-ab-"))
    os.chmod(workdir, 0o755)
    redis_process, redis_port = start_redis(artifacts["module"], workdir)
    cluster = Cluster(artifacts["postgres"], "mirror-ab")
    ratios: dict[str, list[float]] = {}
    daemon_cpu: dict[str, list[float]] = {}
    try:
        redis = connect(redis_port, "mirror-ab")
        subprocess.run([artifacts["daemon"], "migrate", "--database-url", cluster.url], check=True, capture_output=True)
        for round_number in range(options.rounds):
            binary = daemons[round_number % len(daemons)]
            cluster.sql("truncate qsess.sessions")
            ceiling = float(
                subprocess.run(
                    [artifacts["ceiling"], cluster.url, str(options.changes), "2000"],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout.strip()
            )
            cluster.sql("truncate qsess.sessions")
            redis.call("DEL", "qs:{0}:chg")
            redis.call("XGROUP", "CREATE", "qs:{0}:chg", "qsess-syncd", "$", "MKSTREAM")
            mirror.queue_changes(redis, options.changes, round_number * options.changes)
            queued = backlog(redis)
            cpu_before = mirror.cpu_snapshot(redis_process.pid, None, cluster)
            started = time.monotonic()
            daemon = Daemon(binary, redis_port, cluster.url, workdir, "mirror-ab")
            perf = None
            if perf_output and round_number == options.rounds - 1:
                perf = subprocess.Popen(
                    ["perf", "record", "-F", "2000", "-g", "-o", perf_output, "-p", str(daemon.process.pid)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            finished = mirror.wait_drained(redis)
            cpu = mirror.cpu_use(
                cpu_before, mirror.cpu_snapshot(redis_process.pid, daemon, cluster), finished - started
            )
            if perf:
                perf.send_signal(2)
                perf.wait()
            daemon.stop()
            rate = queued / (finished - started)
            ratios.setdefault(binary, []).append(rate / ceiling)
            daemon_cpu.setdefault(binary, []).append(cpu["daemon"] / rate * 1e6)
            print(
                f"round {round_number + 1} {binary}: ceiling {ceiling:,.0f}/s, catch-up {rate:,.0f}/s, "
                f"ratio {rate / ceiling:.2f}, CPU µs per change "
                + ", ".join(f"{name} {used / rate * 1e6:.1f}" for name, used in cpu.items() if name != "generator"),
                flush=True,
            )
        for binary in daemons:
            print(
                f"{binary}: catch-up / ceiling {spread(ratios[binary], 2)}, "
                f"daemon CPU µs per change {spread(daemon_cpu[binary], 1)}"
            )
        if options.bytes:
            cluster.sql("truncate qsess.sessions")
            redis.call("FLUSHALL")
            daemon = Daemon(daemons[-1], redis_port, cluster.url, workdir, "mirror-ab")
            mirror.queue_changes(redis, 200_000, 50_000_000)
            mirror.wait_drained(redis)
            daemon.stop()
            cluster.sql("vacuum (full, analyze) qsess.sessions")
            rows = int(cluster.value("select count(*) from qsess.sessions"))
            sizes = cluster.value(
                "select string_agg(indexrelname || ' ' || pg_relation_size(indexrelid)::text, ', ') "
                "from pg_stat_user_indexes where relname = 'sessions'"
            )
            total = int(cluster.value("select pg_total_relation_size('qsess.sessions')"))
            table = int(cluster.value("select pg_table_size('qsess.sessions')"))
            print(f"postgres bytes per session {total / rows:.0f} (table {table / rows:.0f}); index bytes: {sizes}")
    finally:
        redis_process.terminate()
        redis_process.wait(timeout=30)
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
