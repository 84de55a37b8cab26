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

import json
import os
import pwd
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
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
USER_AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"


def log(message: str) -> None:
    print(f"mirror-bench: {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port not in (6379, 5432):
            return port


def build() -> dict[str, str]:
    command = [
        "cargo", "build", "--release", "-p", "qsess-module", "-p", "qsess-syncd", "--bins", "--lib",
        "--example", "postgres_ceiling", "--message-format=json-render-diagnostics",
    ]
    output = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    artifacts: dict[str, str] = {}
    for line in output.splitlines():
        message = json.loads(line)
        if message.get("reason") != "compiler-artifact":
            continue
        target = message["target"]
        if "cdylib" in target["kind"]:
            artifacts["module"] = next(name for name in message["filenames"] if name.endswith(".so"))
        elif message.get("executable") and target["name"] == "qsess-syncd":
            artifacts["daemon"] = message["executable"]
        elif message.get("executable") and target["name"] == "postgres_ceiling":
            artifacts["ceiling"] = message["executable"]
    missing = {"module", "daemon", "ceiling"} - artifacts.keys()
    if missing:
        sys.exit(f"mirror-bench: cargo did not report {sorted(missing)}")
    return artifacts


class Redis:
    """A tiny RESP client: enough to pipeline commands and read replies."""

    def __init__(self, port: int):
        self.socket = socket.create_connection(("127.0.0.1", port))
        self.reader = self.socket.makefile("rb")

    @staticmethod
    def encode(*words: str | bytes | int) -> bytes:
        parts = [b"*%d\r\n" % len(words)]
        for word in words:
            data = word if isinstance(word, bytes) else str(word).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        return b"".join(parts)

    def read(self):
        line = self.reader.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            length = int(rest)
            if length < 0:
                return None
            data = self.reader.read(length + 2)[:-2]
            return data
        if kind == b"*":
            length = int(rest)
            return None if length < 0 else [self.read() for _ in range(length)]
        raise RuntimeError(f"unexpected reply {line!r}")

    def call(self, *words):
        self.socket.sendall(self.encode(*words))
        return self.read()

    def pipeline(self, commands: list[bytes]) -> None:
        self.socket.sendall(b"".join(commands))
        for _ in commands:
            self.read()


def session_set(sid: int) -> bytes:
    return Redis.encode("QSESS.SET", f"bench-session-{sid}", "DATA", PAYLOAD, "USER", f"user-{sid // 10}",
                        "IP", "203.0.113.7", "UA", USER_AGENT)


class Cluster:
    def __init__(self, workdir: Path):
        bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda path: int(path.parent.name))[-1]
        self.bindir = bindir
        self.dir = workdir / "postgres"
        self.dir.mkdir()
        self.port = free_port()
        self.as_postgres: dict = {}
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            shutil.chown(self.dir, user.pw_uid, user.pw_gid)
            self.as_postgres = {"user": user.pw_uid, "group": user.pw_gid}
        subprocess.run([str(bindir / "initdb"), "-D", str(self.dir / "data"), "-U", "postgres", "--auth=trust", "-N"],
                       check=True, capture_output=True, **self.as_postgres)
        self.log = open(self.dir / "postgres.log", "w")
        self.process = subprocess.Popen(
            [str(bindir / "postgres"), "-D", str(self.dir / "data"), "-p", str(self.port), "-c",
             "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}"],
            stdout=self.log, stderr=subprocess.STDOUT, **self.as_postgres)
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"
        for _ in range(200):
            if self.sql("select 1", check=False).returncode == 0:
                return
            time.sleep(0.05)
        sys.exit(f"mirror-bench: postgres did not start; see {self.dir / 'postgres.log'}")

    def sql(self, query: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["psql", "-X", "-q", "-t", "-A", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                               "-c", query], capture_output=True, text=True, check=check)

    def value(self, query: str) -> str:
        return self.sql(query).stdout.strip()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


class Daemon:
    def __init__(self, binary: str, redis_port: int, database_url: str, workdir: Path):
        self.metrics_port = free_port()
        self.log = open(workdir / "syncd.log", "a")
        self.process = subprocess.Popen(
            [binary, "run", "--redis-url", f"redis://127.0.0.1:{redis_port}/", "--database-url", database_url,
             "--metrics-addr", f"127.0.0.1:{self.metrics_port}", "--skip-migrations"],
            stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(200):
            try:
                self.metrics()
                return
            except OSError:
                time.sleep(0.05)
        sys.exit("mirror-bench: qsess-syncd did not start; see syncd.log")

    def metrics(self) -> dict[str, float]:
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def backlog(redis: Redis) -> int:
    info = redis.call("XINFO", "GROUPS", "qs:{0}:chg")
    for group in info or []:
        fields = dict(zip(group[::2], group[1::2]))
        if fields.get(b"name") == b"qsess-syncd":
            return int(fields.get(b"pending", 0)) + int(fields.get(b"lag") or 0)
    return int(redis.call("XLEN", "qs:{0}:chg"))


def wait_drained(redis: Redis, timeout: float = 300) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if backlog(redis) == 0:
            return time.monotonic()
        time.sleep(0.01)
    sys.exit("mirror-bench: the daemon did not drain the stream in time")


def queue_changes(redis: Redis, count: int, first_sid: int) -> None:
    for start in range(0, count, 1000):
        redis.pipeline([session_set(first_sid + (sid % (count // 2))) for sid in range(start, min(start + 1000, count))])


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int, with_reaped_children: bool = False) -> float:
    """User + system CPU seconds of a process (and of the children it has waited for, when asked)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    # fields[0] is the state (field 3 of proc(5)): utime, stime, cutime, cstime are fields 14-17.
    ticks = int(fields[11]) + int(fields[12])
    if with_reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLOCK_TICKS


def cpu_snapshot(redis_pid: int, daemon: "Daemon | None", cluster: "Cluster") -> dict[str, float]:
    """CPU seconds so far of redis-server, qsess-syncd, PostgreSQL (postmaster, its live and reaped
    backends) and this script (the load generator)."""
    postmaster = cluster.process.pid
    postgres = process_cpu_seconds(postmaster, with_reaped_children=True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if parent == postmaster:
                postgres += process_cpu_seconds(int(entry.name))
    own = os.times()
    return {"redis": process_cpu_seconds(redis_pid),
            "daemon": process_cpu_seconds(daemon.process.pid) if daemon else 0.0,
            "postgres": postgres, "generator": own.user + own.system}


def cpu_use(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    """Cores each part kept busy between two snapshots."""
    return {name: (after[name] - before[name]) / seconds for name in before}


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


def rate_ladder(redis: Redis, daemon: Daemon, redis_pid: int, cluster: "Cluster") -> list[dict]:
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
        mirrored = after.get("qsess_syncd_changes_mirrored_total", 0.0) - before.get("qsess_syncd_changes_mirrored_total", 0.0)
        _, p99, _ = lag_quantiles(before, after)
        sustained = (achieved >= LADDER_OFFERED_SHARE * rate and mirrored / elapsed >= LADDER_MIRRORED_SHARE * achieved
                     and left <= LADDER_BACKLOG_SECONDS * rate)
        steps.append({"rate": rate, "achieved": achieved, "mirrored": mirrored / elapsed, "backlog": left,
                      "p99": p99, "sustained": sustained, "cpu": cpu})
        log(f"ladder {rate}/s: offered {achieved:,.0f}/s, mirrored {mirrored / elapsed:,.0f}/s, backlog {left}, "
            f"lag p99 {p99}, {'sustained' if sustained else 'NOT sustained'}, cores "
            + ", ".join(f"{name} {used:.2f}" for name, used in cpu.items()))
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


def start_redis(module: str, workdir: Path) -> tuple[subprocess.Popen, int]:
    """Starts redis-server with the module on a free loopback port, no persistence; returns it and its port."""
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--logfile", str(workdir / "redis.log"), "--loadmodule", module])
    return process, port


def connect_redis(port: int) -> Redis:
    for _ in range(100):
        try:
            redis = Redis(port)
            redis.call("PING")
            return redis
        except OSError:
            time.sleep(0.05)
    sys.exit("mirror-bench: redis-server did not start; see redis.log")


def main() -> None:
    artifacts = build()
    workdir = Path(tempfile.mkdtemp(prefix="qsess-mirror-bench-"))
    os.chmod(workdir, 0o755)
    redis_process, redis_port = start_redis(artifacts["module"], workdir)
    cluster = Cluster(workdir)
    results: list[tuple[str, str]] = []
    ladder_rows: list[dict] = []
    try:
        redis = connect_redis(redis_port)
        subprocess.run([artifacts["daemon"], "migrate", "--database-url", cluster.url], check=True, capture_output=True)

        ceilings, update_ceilings, catch_ups = [], [], []
        for round_number in range(ROUNDS):
            log(f"round {round_number + 1}/{ROUNDS}: postgres ceiling")
            cluster.sql("truncate qsess.sessions")
            ceiling = subprocess.run([artifacts["ceiling"], cluster.url, str(CHANGES), "2000"], check=True,
                                     capture_output=True, text=True).stdout.strip()
            ceilings.append(float(ceiling))
            # The same sessions again with newer versions: updates only, as in the rate ladder below.
            updates = subprocess.run([artifacts["ceiling"], cluster.url, str(CHANGES), "2000", str(CHANGES)],
                                     check=True, capture_output=True, text=True).stdout.strip()
            update_ceilings.append(float(updates))
            log(f"round {round_number + 1}/{ROUNDS}: catch-up of {CHANGES} queued changes")
            cluster.sql("truncate qsess.sessions")
            redis.call("DEL", "qs:{0}:chg")
            redis.call("XGROUP", "CREATE", "qs:{0}:chg", "qsess-syncd", "$", "MKSTREAM")
            queue_changes(redis, CHANGES, round_number * CHANGES)
            queued = backlog(redis)
            cpu_before = cpu_snapshot(redis_process.pid, None, cluster)
            started = time.monotonic()
            daemon = Daemon(artifacts["daemon"], redis_port, cluster.url, workdir)
            finished = wait_drained(redis)
            catch_up_cpu = cpu_use(cpu_before, cpu_snapshot(redis_process.pid, daemon, cluster), finished - started)
            daemon.stop()
            catch_ups.append(queued / (finished - started))
        results.append(("postgres ceiling, changes/s (median of rounds, min–max)",
                        f"{statistics.median(ceilings):,.0f} ({min(ceilings):,.0f}–{max(ceilings):,.0f})"))
        results.append(("postgres ceiling, updates of existing rows only, changes/s (median, min–max)",
                        f"{statistics.median(update_ceilings):,.0f} "
                        f"({min(update_ceilings):,.0f}–{max(update_ceilings):,.0f})"))
        results.append(("catch-up: queued changes mirrored per second (median, min–max)",
                        f"{statistics.median(catch_ups):,.0f} ({min(catch_ups):,.0f}–{max(catch_ups):,.0f})"))
        ratios = [catch_up / ceiling for catch_up, ceiling in zip(catch_ups, ceilings)]
        results.append(("catch-up / postgres ceiling, same round (median, min–max)",
                        f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})"))
        last_rate = catch_ups[-1]
        results.append(("catch-up, last round: cores busy redis / qsess-syncd / postgres",
                        " / ".join(f"{catch_up_cpu[name]:.2f}" for name in ("redis", "daemon", "postgres"))))
        results.append(("catch-up, last round: CPU µs per change redis / qsess-syncd / postgres",
                        " / ".join(f"{catch_up_cpu[name] / last_rate * 1e6:.1f}" for name in ("redis", "daemon", "postgres"))))

        log("rate ladder: fixed offered rates while the daemon mirrors")
        daemon = Daemon(artifacts["daemon"], redis_port, cluster.url, workdir)
        steps = rate_ladder(redis, daemon, redis_process.pid, cluster)
        passed = [step for step in steps if step["sustained"]]
        best = max(passed, key=lambda step: step["rate"]) if passed else None
        results.append(("sustained: highest offered rate the mirror kept up with (rate ladder below)",
                        f"{best['rate']:,} (offered {best['achieved']:,.0f}/s)" if best else "none of the ladder's rates"))
        ladder_rows = steps

        log("saturated: redis-benchmark writing as fast as it can while the daemon mirrors")
        before = daemon.metrics().get("qsess_syncd_changes_mirrored_total", 0.0)
        started = time.monotonic()
        requests = CHANGES
        subprocess.run(["redis-benchmark", "-p", str(redis_port), "-c", "50", "-P", "16", "-n", str(requests),
                        "-r", "100000", "-q", "QSESS.SET", "bench-load-__rand_int__", "DATA", PAYLOAD, "USER",
                        "user-__rand_int__", "IP", "203.0.113.7", "UA", USER_AGENT],
                       check=True, capture_output=True)
        written = time.monotonic()
        finished = wait_drained(redis)
        mirrored = daemon.metrics().get("qsess_syncd_changes_mirrored_total", 0.0) - before
        results.append(("saturated: changes written per second by redis-benchmark (P16, 50 clients)",
                        f"{requests / (written - started):,.0f}"))
        results.append(("saturated: changes mirrored per second, start of load to empty stream",
                        f"{mirrored / (finished - started):,.0f}"))
        results.append(("saturated: backlog left when the load stopped, drained in",
                        f"{finished - written:.2f} s"))

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
        results.append((f"steady load: changes per second offered", f"{achieved:,.0f}"))
        results.append(("steady load: lag p50 (redis write to postgres commit, histogram bucket)", p50))
        results.append(("steady load: lag p99", p99))
        daemon.stop()

        log("postgres bytes per session")
        cluster.sql("truncate qsess.sessions")
        redis.call("FLUSHALL")
        daemon = Daemon(artifacts["daemon"], redis_port, cluster.url, workdir)
        queue_changes(redis, 2 * BYTES_SESSIONS, 50_000_000)  # BYTES_SESSIONS sessions, each written twice
        wait_drained(redis)
        daemon.stop()
        cluster.sql("vacuum (full, analyze) qsess.sessions")
        rows = int(cluster.value("select count(*) from qsess.sessions"))
        size = int(cluster.value("select pg_total_relation_size('qsess.sessions')"))
        table = int(cluster.value("select pg_table_size('qsess.sessions')"))
        indexes = int(cluster.value("select pg_indexes_size('qsess.sessions')"))
        results.append(("postgres: rows", f"{rows:,}"))
        results.append(("postgres: bytes per session, table + TOAST + indexes, after VACUUM FULL",
                        f"{size / rows:.0f} (table {table / rows:.0f}, indexes {indexes / rows:.0f})"))
    finally:
        redis_process.terminate()
        redis_process.wait(timeout=30)
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    cores = os.cpu_count()
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2]
    pg_version = subprocess.run([str(cluster.bindir / "postgres"), "--version"], capture_output=True, text=True).stdout.strip()
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
        f"(pending + undelivered entries) is at most {LADDER_BACKLOG_SECONDS * 1000:.0f} ms of the rate. Mirrored/s = changes the "
        "daemon committed during the step / its length; lag p99 is the bucket bound of the daemon's "
        "`qsess_syncd_lag_seconds` histogram (Redis write to Postgres commit) for the step.",
        "",
        "| offered rate | achieved offered/s | mirrored/s | backlog at the end | lag p99 | sustained | "
        "cores busy: redis / qsess-syncd / postgres / generator / all |",
        "|---:|---:|---:|---:|---|---|---|",
        *[f"| {step['rate']:,} | {step['achieved']:,.0f} | {step['mirrored']:,.0f} | {step['backlog']:,} | "
          f"{step['p99']} | {'yes' if step['sustained'] else 'no'} | "
          + " / ".join(f"{used:.2f}" for used in step["cpu"].values()) + f" / {sum(step['cpu'].values()):.2f} |"
          for step in ladder_rows],
        "",
    ]
    report = "\n".join(lines)
    out = ROOT / "bench" / "results" / "mirror.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
