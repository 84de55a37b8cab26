#!/usr/bin/env python3
"""The commands part on Redis Cluster (Python 3.11 standard library only).

Starts a Redis Cluster of three primaries without replicas (CPU is scarce), each a redis-server with the release
module, and measures with redis-benchmark (50 clients, pipeline 16, -r 100000, 300-byte DATA) the SET and GET
pairs of scripts/bench's commands part, built by the same code (bench/qsess_bench/commands.py) with a hash tag
added to every id and key:
  - one node: redis-benchmark without --cluster against one primary, every id and key tagged with a slot that
    primary serves (CRC16 of the tag checked against CLUSTER SLOTS): QSESS.SET against bench/session_write.lua
    (EVALSHA) and against a plain HSET of the same fields; QSESS.GET against HGETALL and bench/session_read.lua;
  - the aggregate over the three primaries: the same pairs through redis-benchmark --cluster, which rewrites
    `{tag}` into a tag of the node each client talks to, so the keys spread over every primary; ops/s are
    redis-benchmark's total over the nodes.
On a 2-core machine the three primaries and redis-benchmark's three threads share two cores, so the aggregate shows
that the commands run across nodes at full speed beside the baselines, not how throughput scales with nodes.
Rounds and order follow the commands part: in each group qsess runs first in odd rounds and the baselines first in
even rounds, and ratio = qsess / baseline in the same round. Every node is pre-filled with 100,000 sessions on each
side under the tag redis-benchmark --cluster uses for it, and qsess.touch-granularity-ms is raised to a day so that
every GET is a pure read (every GET must hit). Afterwards every key of every node is checked to be in a slot that
node serves, and the sessions on each node are counted.
Results go to bench/results/cluster.md and stdout.

Usage: bench/cluster.py [--quick] [--rounds N] [--set-requests N] [--read-requests N]
QSESS_MODULE_PATH names a built libqsess.so (scripts/bench passes its own); otherwise this builds it
(cargo build --release -p qsess-module).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from qsess_bench.commands import COMPARISONS as ALL_COMPARISONS
from qsess_bench.commands import LABELS as ALL_LABELS
from qsess_bench.commands import (
    LUA_PREFIX,
    benchmark_command,
    lua_stream,
    payload,
    requests_per_second,
    resp_lua_set,
    resp_module_set,
    sid,
)
from qsess_bench.resp import Redis
from qsess_bench.results import publish
from qsess_bench.servers import ROOT, RedisCluster, cargo_artifacts, key_slot
from qsess_bench.stats import in_round_order, per_round_ratios
from qsess_bench.workload import IP, USER_AGENT

WHO = "cluster-bench"
CLIENTS = 50
PIPELINE = 16
KEYSPACE = 100_000
DATA_SIZE = 300
PRIMARIES = 3
WRITES = ["qsess_set", "lua_set", "hset"]
READS = ["qsess_get", "hgetall", "lua_get"]
# The commands part's labels and pairs (qsess_bench.commands), for the tests this part runs.
LABELS = {test: ALL_LABELS[test] for test in WRITES + READS}
COMPARISONS = [pair for pair in ALL_COMPARISONS if pair[1] in LABELS and pair[2] in LABELS]
PARTS = {
    "node": "One node (redis-benchmark without --cluster, one primary)",
    "cluster": "Aggregate over three primaries (redis-benchmark --cluster)",
}
PROBE = "qsess-cluster-bench-probe:{tag}"
TOUCH_GRANULARITY_MS = 86_400_000


def log(message: str) -> None:
    print(f"{WHO}: {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round and fewer requests")
    parser.add_argument("--rounds", type=int, help="side-by-side rounds (default 3, 1 with --quick)")
    parser.add_argument("--set-requests", type=int, help="requests per write test (default 150000, quick 100000)")
    parser.add_argument("--read-requests", type=int, help="requests per read test (default 400000, quick 300000)")
    args = parser.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.set_requests = args.set_requests or (100_000 if args.quick else 150_000)
    args.read_requests = args.read_requests or (300_000 if args.quick else 400_000)
    return args


def module_path() -> tuple[str, float | None]:
    """QSESS_MODULE_PATH, or the release module cargo builds (with the seconds the build took)."""
    if os.environ.get("QSESS_MODULE_PATH"):
        return os.environ["QSESS_MODULE_PATH"], None
    started = time.monotonic()
    module = cargo_artifacts(["--release", "-p", "qsess-module", "--lib"]).get("qsess")
    if not module:
        sys.exit(f"{WHO}: cargo did not report the qsess cdylib")
    return module, time.monotonic() - started


def info(redis: Redis, *sections: str) -> dict[str, str]:
    text = redis.call("INFO", *sections).decode()
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))


def owned(slot: int, ranges: list[tuple[int, int]]) -> bool:
    return any(start <= slot <= end for start, end in ranges)


def probe_tags(cluster: RedisCluster, owners: dict[int, list[tuple[int, int]]]) -> dict[int, str]:
    """What redis-benchmark --cluster writes over `{tag}` for each primary: the tag of the node's first slot,
    padded with `}` to five characters (`{06S}`, `{8M}}`), read back from the key a probe run leaves on each
    node. Ids prefilled with exactly that text are the ids the benchmark's commands name; each tag must hash to a
    slot its node serves."""
    probe = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(cluster.ports[0]), "--cluster", "-q", "--csv"]
    subprocess.run([*probe, "-c", "30", "-n", "3000", "SET", PROBE, "1"], check=True, capture_output=True)
    prefix = PROBE.removesuffix("{tag}")
    tags = {}
    for port in cluster.ports:
        redis = cluster.node(port)
        keys = redis.call("KEYS", f"{prefix}*")
        if len(keys) != 1 or len(keys[0]) != len(PROBE):
            sys.exit(f"{WHO}: the probe left {keys!r} on the node on port {port}, expected one key like {PROBE}")
        tag = keys[0].decode().removeprefix(prefix)
        if not owned(key_slot(tag), owners[port]):
            sys.exit(f"{WHO}: tag {tag} (slot {key_slot(tag)}) is not served by port {port}: {owners[port]}")
        redis.call("DEL", keys[0])
        tags[port] = tag
    return tags


def pipe(port: int, path: Path) -> None:
    """Feeds a RESP file to a node with redis-cli --pipe; every reply must be a success."""
    with open(path, "rb") as commands:
        out = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(port), "--pipe"], stdin=commands, capture_output=True, text=True
        ).stdout
    if not re.search(r"^errors: 0, replies:", out, re.MULTILINE):
        sys.exit(f"{WHO}: redis-cli --pipe of {path.name} into port {port} reported errors:\n{out}")


def streams(redis: Redis) -> list[bytes]:
    """qsess's change streams on a node (one per slot with sessions: qs:{<slot tag>}:chg)."""
    found, cursor = [], b"0"
    while True:
        cursor, keys = redis.call("SCAN", cursor, "MATCH", "qs:*", "COUNT", 5000, "TYPE", "stream")
        found += keys
        if cursor == b"0":
            return sorted(set(found))


class Bench:
    """The cluster, its tags and the runs measured on it."""

    def __init__(self, cluster: RedisCluster, workdir: Path, args: argparse.Namespace):
        self.cluster, self.workdir, self.args = cluster, workdir, args
        self.owners = cluster.slots()
        self.node_port = cluster.ports[0]
        self.tags = probe_tags(cluster, self.owners)
        self.data = payload(DATA_SIZE)
        self.runs: dict[tuple[str, str], dict[int, float]] = {}
        self.errors: list[str] = []
        self.get_touches = self.get_misses = 0
        self.streams: dict[int, list[bytes]] = {}
        self.shas: dict[str, str] = {}
        self.facts: dict[str, str] = {}

    def prefill(self) -> None:
        """On every primary, KEYSPACE sessions through QSESS.SET and KEYSPACE through session_write.lua, ids
        tagged with the node's tag; the scripts loaded on every node; the change streams found and dropped."""
        for name in ("session_write.lua", "session_read.lua"):
            shas = {
                self.cluster.node(p).call("SCRIPT", "LOAD", (ROOT / "bench" / name).read_text()) for p in self.ports
            }
            if len(shas) != 1:
                sys.exit(f"{WHO}: SCRIPT LOAD {name} gave {shas!r}")
            self.shas[name] = shas.pop().decode()
        for port in self.ports:
            # A GET of a session seen more than touch-granularity-ms (60 s) ago writes; the runs here outlast
            # that, and QSESS.TOUCH is debounced the same way, so raise it to a day: every GET is a pure read.
            self.cluster.node(port).call("CONFIG", "SET", "qsess.touch-granularity-ms", TOUCH_GRANULARITY_MS)
            tag, files = self.tags[port], self.workdir / f"prefill-{port}"
            files.mkdir()
            log(f"prefill port {port} (tag {tag}): {KEYSPACE:,} qsess and {KEYSPACE:,} Lua sessions")
            resp_module_set(str(files / "qsess.resp"), KEYSPACE, 1, DATA_SIZE, tag=tag)
            resp_lua_set(
                str(files / "lua.resp"), KEYSPACE, 1, DATA_SIZE, self.shas["session_write.lua"], LUA_PREFIX, tag=tag
            )
            pipe(port, files / "qsess.resp")
            pipe(port, files / "lua.resp")
            redis = self.cluster.node(port)
            self.streams[port] = streams(redis)
            if len(self.streams[port]) != 1:
                sys.exit(f"{WHO}: expected one qsess change stream on port {port}, found {self.streams[port]!r}")
            self.drop_streams([port])
            first = sid(0, tag=tag)
            qs_fields = len(redis.call("QSESS.PEEK", first) or []) // 2
            record = f"{LUA_PREFIX}:s:{first}"
            lua_fields = len(redis.call("HGETALL", record) or []) // 2
            if not qs_fields or not lua_fields:
                sys.exit(f"{WHO}: the prefill did not create {first} on port {port}")
            encoding = redis.call("OBJECT", "ENCODING", record).decode()
            self.facts["lua_hash"] = f"{lua_fields} fields, OBJECT ENCODING {encoding}"
            log(f"port {port}: dbsize {redis.call('DBSIZE')}; QSESS.PEEK {first}: {qs_fields} fields")

    @property
    def ports(self) -> list[int]:
        return self.cluster.ports

    def drop_streams(self, ports: list[int]) -> None:
        """Deletes qsess's and the Lua side's change streams, so memory stays comparable between runs."""
        for port in ports:
            self.cluster.node(port).call("DEL", *self.streams[port], lua_stream(tag=self.tags[port]))

    def totals(self, sections: tuple[str, ...], *fields: str) -> list[int]:
        """Each field summed over the nodes (INFO all leaves out the module's sections: name them)."""
        values = [info(self.cluster.node(port), *sections) for port in self.ports]
        missing = [field for field in fields if not all(field in value for value in values)]
        if missing:
            sys.exit(f"{WHO}: INFO {' '.join(sections)} has no {missing} on some node")
        return [sum(int(value.get(field, 0)) for value in values) for field in fields]

    def run(self, part: str, test: str, round_number: int) -> None:
        """One redis-benchmark run of `test`, recorded as ops/s; any error reply on any node is reported."""
        cluster = part == "cluster"
        tag = "{tag}" if cluster else self.tags[self.node_port]
        requests = self.args.set_requests if test in WRITES else self.args.read_requests
        command = [
            "redis-benchmark",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.node_port),
            *(["--cluster"] if cluster else []),
            "-q",
            "--csv",
            "-c",
            str(CLIENTS),
            "-P",
            str(PIPELINE),
            "-r",
            str(KEYSPACE),
            "-n",
            str(requests),
            *benchmark_command(test, self.data, self.shas, tag),
        ]
        errors_before, touches_before, misses_before = self.totals(
            ("stats", "qsess"), "total_error_replies", "qsess_touches", "qsess_misses"
        )
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"{WHO}: redis-benchmark failed for {test} ({part}):\n{result.stdout}{result.stderr}")
        ops = float(requests_per_second(result.stdout))
        errors_after, touches_after, misses_after = self.totals(
            ("stats", "qsess"), "total_error_replies", "qsess_touches", "qsess_misses"
        )
        self.runs.setdefault((part, test), {})[round_number] = ops
        if test == "qsess_get":
            self.get_touches += touches_after - touches_before
            self.get_misses += misses_after - misses_before
        print(f"  round {round_number}  {part:<7}  {test:<9} n={requests:<8d} {ops:12,.0f} ops/s", flush=True)
        if errors_after > errors_before:
            count = errors_after - errors_before
            self.errors.append(f"{part} {test} round {round_number}: {count}")
            log(f"WARNING: {count} error replies during {test} ({part}, round {round_number})")
            for port in self.ports:
                log(f"port {port} INFO errorstats: {info(self.cluster.node(port), 'errorstats')}")

    def measure(self) -> None:
        for round_number in range(1, self.args.rounds + 1):
            first = "qsess first" if round_number % 2 == 1 else "baselines first"
            log(f"round {round_number} of {self.args.rounds} ({first})")
            for part in PARTS:
                written = [self.node_port] if part == "node" else self.ports
                for test in in_round_order(round_number, WRITES):
                    self.run(part, test, round_number)
                    self.drop_streams(written)
                for test in in_round_order(round_number, READS):
                    self.run(part, test, round_number)

    def check_keys(self) -> list[dict]:
        """Every key of every node, its slot by CRC16 of its hash tag (checked against CLUSTER KEYSLOT for a
        sample), against the slots the node serves; and what kinds of keys each node holds."""
        rows = []
        for port in self.ports:
            redis = self.cluster.node(port)
            kinds: Counter[str] = Counter()
            slots: set[int] = set()
            outside, checked, cursor = 0, 0, b"0"
            while True:
                cursor, keys = redis.call("SCAN", cursor, "COUNT", 5000)
                for key in keys:
                    slot = key_slot(key)
                    slots.add(slot)
                    outside += not owned(slot, self.owners[port])
                    kinds[kind(key)] += 1
                    if kind(key) == "other" and kinds["other"] <= 5:
                        log(f"port {port}: key {key!r} is none of qsess's or the baseline's")
                    if checked < 200:
                        if redis.call("CLUSTER", "KEYSLOT", key) != slot:
                            sys.exit(f"{WHO}: CRC16 of {key!r} gives {slot}, CLUSTER KEYSLOT disagrees")
                        checked += 1
                if cursor == b"0":
                    break
            dbsize = redis.call("DBSIZE")
            if sum(kinds.values()) != dbsize:
                sys.exit(f"{WHO}: SCAN of port {port} saw {sum(kinds.values())} keys, DBSIZE says {dbsize}")
            rows.append({"port": port, "keys": dbsize, "outside": outside, "slots": sorted(slots), **kinds})
            log(f"port {port}: {dbsize:,} keys in slots {sorted(slots)}, {outside} outside its slots; {dict(kinds)}")
        return rows


def kind(key: bytes) -> str:
    """What a key is: a qsess record, index or stream, a Lua/HSET baseline record or index, or something else."""
    for name, pattern in (
        ("qsess records", rb"qs:\{[^}]+\}:s:"),
        ("qsess indexes", rb"qs:\{[^}]+\}:u:"),
        ("qsess streams", rb"qs:\{[^}]+\}:(chg|miss)$"),
        ("baseline records", rb"bl:s:"),
        ("baseline indexes", rb"bl:u:"),
    ):
        if re.match(pattern, key):
            return name
    return "other"


def commit() -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--", "module", "record", "Cargo.toml", "Cargo.lock"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.split("\n")
    paths = " ".join(line[3:] for line in changed if line)
    return (head.stdout.strip() or "unknown") + (f" + uncommitted changes in: {paths}" if paths else "")


def version(program: str) -> str:
    """What `program --version` says, e.g. `Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 ...`."""
    return subprocess.run([program, "--version"], capture_output=True, text=True).stdout.strip()


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        "unknown",
    )
    return f"{os.cpu_count()} CPUs, {cpu}"


def table(bench: Bench, part: str) -> list[str]:
    lines = [
        "| Comparison | qsess ops/s | baseline ops/s | ratio median | ratio min | ratio max |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for title, qsess, baseline in COMPARISONS:
        a, b = bench.runs.get((part, qsess), {}), bench.runs.get((part, baseline), {})
        ratios = per_round_ratios(a, b)
        if ratios:
            lines.append(
                f"| {title} | {statistics.median(a.values()):,.0f} | {statistics.median(b.values()):,.0f} | "
                f"{statistics.median(ratios):.2f} | {min(ratios):.2f} | {max(ratios):.2f} |"
            )
    return lines


def report(bench: Bench, keys: list[dict], facts: dict[str, str]) -> str:
    args = bench.args
    rounds = list(range(1, args.rounds + 1))
    node_tag = bench.tags[bench.node_port]
    lines = [
        "# Redis Cluster benchmark",
        "",
        f"Command: `{facts['command']}`; {facts['wall']}.",
        "",
        f"- Date: {facts['date']}; qsess commit {facts['commit']}",
        f"- Machine: {machine()}",
        f"- {facts['redis_version']}; {facts['redis_benchmark']}",
        f"- Load average at start / end: {facts['load_start']} / {facts['load_end']}",
        f"- Cluster: {PRIMARIES} primaries, no replicas, on one machine; slots "
        + ", ".join(f"{start}-{end}" for port in bench.ports for start, end in bench.owners[port])
        + "; qsess.buckets 1 (the default); no qsess-syncd",
        f"- {len(rounds)} round(s); in each group (writes, reads) qsess runs first in odd rounds and the baselines "
        f"first in even rounds; redis-benchmark -c {CLIENTS} -P {PIPELINE} -r {KEYSPACE}, DATA {DATA_SIZE} bytes, "
        f"IP {IP}, UA {len(USER_AGENT)} bytes; ratio = qsess / baseline in the same round",
        f"- Requests per test: SET/Lua/HSET {args.set_requests}, GET/HGETALL/Lua read {args.read_requests}",
        f"- Every primary pre-filled with {KEYSPACE} sessions each side under its tag (qsess `{{tag}}sid:<n>` owned by "
        f"`{{tag}}user:<n>`, Lua `bl:s:{{tag}}sid:<n>`); change streams deleted after every SET test",
        f"- Baseline hash `bl:s:<sid>`: {bench.facts.get('lua_hash', '?')}",
        f"- `qsess.touch-granularity-ms` {TOUCH_GRANULARITY_MS} on every node, so every QSESS.GET is a pure read (the "
        "commands part TOUCHes its sessions before its GET runs instead; here the runs outlast the default 60 s)",
        "",
        f"## {PARTS['node']}",
        "",
        f"Every id and key carries the tag `{node_tag}` (slot {key_slot(node_tag)}, served by the primary measured), "
        f"e.g. `QSESS.SET {node_tag}sid:__rand_int__ ... USER {node_tag}user:__rand_int__` against "
        f"`EVALSHA <session_write.lua> 3 bl:s:{node_tag}sid:__rand_int__ bl:u:{node_tag}user:__rand_int__ "
        f"bl:{node_tag}chg ...`; the other two primaries idle.",
        "",
        *table(bench, "node"),
        "",
        f"## {PARTS['cluster']}",
        "",
        "redis-benchmark --cluster runs one thread per primary, gives each client one node and rewrites `{tag}` in "
        "every id and key into the tag of that node's first slot ("
        + ", ".join(f"`{bench.tags[port]}` slot {key_slot(bench.tags[port])}" for port in bench.ports)
        + "; it pads a two-character tag with `}`, and the prefill used the same text), so each test runs on all "
        "three primaries at once; ops/s is its total over the nodes.",
        "",
        f"**This machine has {os.cpu_count()} cores: the three primaries and redis-benchmark's three threads share "
        "them, so the aggregate shows that the commands work across nodes at full speed side by side with the "
        "baselines. It is not a scaling claim.**",
        "",
        *table(bench, "cluster"),
        "",
        "## Per-round ops/s",
        "",
        "| Command | Part | " + " | ".join(f"round {r}" for r in rounds) + " |",
        "|---|---|" + "---:|" * len(rounds),
    ]
    for part in PARTS:
        for test, label in LABELS.items():
            values = bench.runs.get((part, test), {})
            cells = " | ".join(f"{values[r]:,.0f}" if r in values else "-" for r in rounds)
            lines.append(f"| {label} | {'one node' if part == 'node' else 'aggregate'} | {cells} |")
    outside = sum(row["outside"] for row in keys)
    lines += [
        "",
        "## Checks",
        "",
        f"- Error replies during the runs (INFO stats total_error_replies, every node): "
        f"{len(bench.errors)} run(s) with errors{': ' + '; '.join(bench.errors) if bench.errors else ''}",
        f"- qsess_errors / qsess_panics at the end, every node: {facts['qsess_errors']} / {facts['qsess_panics']}",
        f"- QSESS.GET runs: touches (writes) {bench.get_touches}, misses {bench.get_misses}",
        f"- Keys outside the slots their node serves (CRC16 of the hash tag against CLUSTER SLOTS, checked against "
        f"CLUSTER KEYSLOT on 200 keys a node), after every run: {outside} of {sum(row['keys'] for row in keys):,}",
        "",
        "| Node (port) | Slots served | Slots holding keys | qsess sessions | qsess indexes | baseline hashes | "
        "baseline indexes | keys | keys outside its slots |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in keys:
        port = row["port"]
        served = ", ".join(f"{start}-{end}" for start, end in bench.owners[port])
        lines.append(
            f"| {port} | {served} | {', '.join(map(str, row['slots']))} | {row.get('qsess records', 0):,} | "
            f"{row.get('qsess indexes', 0):,} | {row.get('baseline records', 0):,} | "
            f"{row.get('baseline indexes', 0):,} | {row['keys']:,} | {row['outside']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args = arguments()
    started = time.monotonic()
    facts = {
        "command": shlex.join(["python3", "bench/cluster.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit(),
        "load_start": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "redis_version": version("redis-server"),
        "redis_benchmark": version("redis-benchmark"),
    }
    module, build_seconds = module_path()
    log(f"module {module}")
    workdir = Path(tempfile.mkdtemp(prefix="qsess-cluster-bench-"))
    cluster = None
    try:
        cluster = RedisCluster(module, workdir, WHO, primaries=PRIMARIES)
        log(f"cluster on ports {cluster.ports} (PIDs {[process.pid for process in cluster.processes]})")
        bench = Bench(cluster, workdir, args)
        log(f"tags: {bench.tags}")
        bench.prefill()
        measured = time.monotonic()
        bench.measure()
        measure_seconds = time.monotonic() - measured
        log("checking every key's slot on every node")
        keys = bench.check_keys()
        facts["qsess_errors"], facts["qsess_panics"] = map(
            str, bench.totals(("qsess",), "qsess_errors", "qsess_panics")
        )
    except BaseException:
        log(f"stopped early; the nodes' logs are in {workdir}")
        raise
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    finally:
        if cluster:
            cluster.stop()
    facts["load_end"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    wall = time.monotonic() - started
    facts["wall"] = f"{wall:.0f} s in all, {measure_seconds:.0f} s of it the redis-benchmark runs" + (
        f", {build_seconds:.0f} s the cargo build" if build_seconds is not None else " (module built beforehand)"
    )
    publish("cluster.md", report(bench, keys, facts))
    outside = sum(row["outside"] for row in keys)
    if (
        bench.errors
        or outside
        or bench.get_misses
        or bench.get_touches
        or {facts["qsess_errors"], facts["qsess_panics"]} != {"0"}
    ):
        sys.exit(f"{WHO}: errors, GET misses or touches, or keys outside their node's slots (bench/results/cluster.md)")


if __name__ == "__main__":
    main()
