#!/usr/bin/env python3
"""Helpers for scripts/bench (Python 3.11 standard library only).

Subcommands:
  cdylib                 read cargo's --message-format=json output on stdin, print the qsess cdylib path
  free-port              print a free loopback TCP port (never 6379)
  payload N              print a fixed N-byte printable payload (no spaces)
  resp-module-set ...    write a RESP file of QSESS.SET commands (prefill / memory load)
  resp-lua-set ...       write a RESP file of EVALSHA commands running bench/session_write.lua
  resp-module-touch ...  write a RESP file of QSESS.TOUCH commands
  bench-command TEST DATA_SIZE SCRIPT=SHA...
                         print the redis-benchmark arguments of one test (qsess_bench/commands.py), NUL-ended
  round-order ROUND TEST...
                         print the tests in the order that round runs them (qsess first in odd rounds)
  rps                    read redis-benchmark --csv output on stdin, print the last test's requests/s
  info FIELD...          read INFO output on stdin, print the named fields' values (one a line)
  cpu-seconds            read INFO cpu output on stdin, print redis-server's CPU seconds: user+sys, then sys
  handle SID             print the qsess handle of a session id (base64url-nopad(SHA-256(sid)[..16]))
  report RESULTS OUT     render the Markdown results table from the key/value results file
"""

from __future__ import annotations

import base64
import hashlib
import json
import statistics
import sys
from pathlib import Path

from qsess_bench.commands import (
    COMPARISONS,
    LABELS,
    benchmark_command,
    payload,
    requests_per_second,
    resp_lua_set,
    resp_module_set,
    resp_module_touch,
)
from qsess_bench.servers import free_port
from qsess_bench.stats import in_round_order, per_round_ratios
from qsess_bench.workload import IP, USER_AGENT


def cdylib() -> None:
    paths = []
    for line in sys.stdin:
        line = line.strip()
        if not line.startswith("{"):
            continue
        message = json.loads(line)
        if message.get("reason") == "build-finished" and not message.get("success", False):
            sys.exit("bench: cargo build failed")
        if message.get("reason") != "compiler-artifact":
            continue
        target = message.get("target", {})
        if "cdylib" not in target.get("kind", []):
            continue
        if "qsess-module" not in message.get("package_id", "") and target.get("name") != "qsess":
            continue
        paths += [f for f in message.get("filenames", []) if f.endswith((".so", ".dylib"))]
    if len(paths) != 1:
        sys.exit(f"bench: expected one qsess cdylib in cargo's output, found {paths!r}")
    print(paths[0])


def rps() -> None:
    print(requests_per_second(sys.stdin.read()))


def bench_command(test: str, data_size: int, scripts: list[str]) -> None:
    """Prints the test's redis-benchmark arguments, each ended by a NUL (bash: mapfile -d '')."""
    shas = dict(script.split("=", 1) for script in scripts)
    sys.stdout.write("".join(f"{word}\0" for word in benchmark_command(test, payload(data_size), shas)))


def info(fields: list[str]) -> None:
    values = {}
    for line in sys.stdin:
        name, sep, value = line.strip().partition(":")
        if sep:
            values[name] = value
    for field in fields:
        print(values.get(field, "0"))


def handle(session_id: str) -> None:
    digest = hashlib.sha256(session_id.encode()).digest()[:16]
    print(base64.urlsafe_b64encode(digest).rstrip(b"=").decode())


# --- report ---------------------------------------------------------------------------------------


def cpu_seconds() -> None:
    values = {}
    for line in sys.stdin.read().splitlines():
        name, _, value = line.strip().partition(":")
        values[name] = value
    print(float(values["used_cpu_user"]) + float(values["used_cpu_sys"]), float(values["used_cpu_sys"]))


def load_results(
    path: str,
) -> tuple[dict[str, str], list[tuple[str, int, int, float]], list[tuple[str, int, int, float, float]]]:
    """Results file lines: `fact <name> <value...>`, `rps <test> <pipeline> <round> <ops/s>` or
    `cpu <test> <pipeline> <round> <redis-server CPU µs per request> <of which in the kernel>`."""
    facts: dict[str, str] = {}
    runs: list[tuple[str, int, int, float]] = []
    cpu: list[tuple[str, int, int, float, float]] = []
    for line in Path(path).read_text().splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "fact":
            name, _, value = rest.partition(" ")
            facts[name] = value
        elif kind == "rps":
            test, pipeline, round_, value = rest.split()
            runs.append((test, int(pipeline), int(round_), float(value)))
        elif kind == "cpu":
            test, pipeline, round_, value, kernel = rest.split()
            cpu.append((test, int(pipeline), int(round_), float(value), float(kernel)))
    return facts, runs, cpu


def fmt_ops(value: float) -> str:
    return f"{value:,.0f}"


def fmt_bytes(value: float) -> str:
    return f"{value:,.0f}"


def report(results_path: str, out_path: str) -> None:
    facts, runs, cpu = load_results(results_path)
    by_key: dict[tuple[str, int], dict[int, float]] = {}
    for test, pipeline, round_, value in runs:
        by_key.setdefault((test, pipeline), {})[round_] = value
    cpu_by_key: dict[tuple[str, int], dict[int, float]] = {}
    kernel_by_key: dict[tuple[str, int], dict[int, float]] = {}
    for test, pipeline, round_, value, kernel in cpu:
        cpu_by_key.setdefault((test, pipeline), {})[round_] = value
        kernel_by_key.setdefault((test, pipeline), {})[round_] = kernel
    pipelines = sorted({p for _, p, _, _ in runs}, reverse=True)
    rounds = sorted({r for _, _, r, _ in runs})

    lines = ["# qsess command benchmark", ""]
    lines += [
        f"- Date: {facts.get('date', '?')}; qsess commit {facts.get('commit', '?')}",
        f"- Machine: {facts.get('nproc', '?')} CPUs, {facts.get('cpu', '?')}",
        f"- {facts.get('redis_version', '?')}",
        f"- Load average at start / end: {facts.get('load_start', '?')} / {facts.get('load_end', '?')}",
        f"- Mode: {facts.get('mode', '?')}; {len(rounds)} round(s); in each group "
        "(writes, reads, BYUSER) qsess runs first in odd rounds and the baselines first in even rounds; "
        f"redis-benchmark -c {facts.get('clients', '?')} -r {facts.get('keyspace', '?')}, "
        f"DATA {facts.get('data_size', '?')} bytes, IP {IP}, UA {len(USER_AGENT)} bytes",
        f"- Requests per test: {facts.get('requests', '?')}",
        f"- Keyspaces pre-filled with {facts.get('keyspace', '?')} sessions each (qsess `qs:`, Lua `bl:`); "
        "change streams deleted after every SET test",
        f"- Baseline hash `bl:s:<sid>`: {facts.get('lua_hash', '?')}",
        f"- BYUSER: {facts.get('byuser', '-')}",
        "",
        "## Throughput (ops/s, median over rounds; ratio = qsess / baseline per round)",
        "",
        "| Comparison | Pipeline | qsess ops/s | baseline ops/s | ratio median | ratio min | ratio max |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for pipeline in pipelines:
        for title, a, b in COMPARISONS:
            ra, rb = by_key.get((a, pipeline), {}), by_key.get((b, pipeline), {})
            ratios = per_round_ratios(ra, rb)
            if not ratios:
                continue
            lines.append(
                f"| {title} | {pipeline} | {fmt_ops(statistics.median(ra.values()))} | "
                f"{fmt_ops(statistics.median(rb.values()))} | {statistics.median(ratios):.2f} | "
                f"{min(ratios):.2f} | {max(ratios):.2f} |"
            )

    lines += [
        "",
        "## Server CPU per request (µs, median over rounds; ratio = baseline / qsess per round, > 1: qsess is cheaper)",
        "",
        "redis-server's own CPU time (INFO cpu: used_cpu_user + used_cpu_sys) during the run / requests: what a "
        "command costs the server, whatever the client did; in brackets the part spent in the kernel "
        "(used_cpu_sys: socket reads and writes, epoll), which is the same for every command at a given pipeline "
        "depth and is most of the cost at pipeline 1.",
        "",
        "| Comparison | Pipeline | qsess µs (kernel) | baseline µs (kernel) | ratio median | ratio min | ratio max |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for pipeline in pipelines:
        for title, a, b in COMPARISONS:
            ca, cb = cpu_by_key.get((a, pipeline), {}), cpu_by_key.get((b, pipeline), {})
            ratios = per_round_ratios(cb, ca)  # baseline / qsess: > 1 when qsess costs less
            if not ratios:
                continue
            ka, kb = kernel_by_key[(a, pipeline)], kernel_by_key[(b, pipeline)]
            lines.append(
                f"| {title} | {pipeline} | {statistics.median(ca.values()):.2f} "
                f"({statistics.median(ka.values()):.2f}) | "
                f"{statistics.median(cb.values()):.2f} ({statistics.median(kb.values()):.2f}) | "
                f"{statistics.median(ratios):.2f} | {min(ratios):.2f} | {max(ratios):.2f} |"
            )

    lines += [
        "",
        "## Per-round ops/s",
        "",
        "| Command | Pipeline | " + " | ".join(f"round {r}" for r in rounds) + " |",
        "|---|---:|" + "---:|" * len(rounds),
    ]
    for pipeline in pipelines:
        for test, label in LABELS.items():
            values = by_key.get((test, pipeline))
            if values:
                cells = " | ".join(fmt_ops(values[r]) if r in values else "-" for r in rounds)
                lines.append(f"| {label} | {pipeline} | {cells} |")

    count = int(facts.get("mem_sessions", "0") or 0)
    if count:
        before = int(facts["mem_before"])
        with_stream = int(facts["mem_after"])
        trimmed = int(facts["mem_after_trimmed"])
        lines += [
            "",
            f"## Memory ({count:,} sessions, {facts.get('data_size', '?')}-byte DATA, "
            f"{facts.get('mem_per_user', '?')} sessions per user, fresh server)",
            "",
            "| Measure | Bytes |",
            "|---|---:|",
            f"| per session, record + index, change stream deleted | {fmt_bytes((trimmed - before) / count)} |",
            f"| per session, change stream still present | {fmt_bytes((with_stream - before) / count)} |",
            f"| used_memory before / after / after DEL `qs:{{0}}:chg` | "
            f"{fmt_bytes(before)} / {fmt_bytes(with_stream)} / {fmt_bytes(trimmed)} |",
            f"| MEMORY USAGE of one record key (`qs:{{0}}:s:<handle>`) | {facts.get('mem_usage_record', '?')} |",
            f"| STRLEN of that record (encoded record) | {facts.get('mem_record_strlen', '?')} |",
            f"| MEMORY USAGE of one 10-member index key (`qs:{{0}}:u:<uid>`, SAMPLES 0) | "
            f"{facts.get('mem_usage_index', '?')} |",
            f"| change stream length before DEL (XLEN) | {facts.get('mem_stream_len', '?')} |",
        ]

    lines += [
        "",
        "## Checks",
        "",
        f"- Error replies during the throughput tests (INFO stats total_error_replies): {facts.get('errors', '?')}",
        f"- qsess_errors / qsess_panics at the end: {facts.get('qsess_errors', '?')} / "
        f"{facts.get('qsess_panics', '?')}",
        f"- QSESS.GET runs: touches (writes) {facts.get('get_touches', '?')}, misses {facts.get('get_misses', '?')}",
        f"- QSESS.PEEK runs: misses {facts.get('peek_misses', '?')}",
    ]
    if facts.get("notes"):
        lines.append(f"- Notes: {facts['notes']}")
    text = "\n".join(lines) + "\n"
    Path(out_path).write_text(text)
    sys.stdout.write(text)


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    command, args = sys.argv[1], sys.argv[2:]
    if command == "cdylib":
        cdylib()
    elif command == "free-port":
        print(free_port())
    elif command == "payload":
        print(payload(int(args[0])))
    elif command == "resp-module-set":
        resp_module_set(args[0], int(args[1]), int(args[2]), int(args[3]), *args[4:6])
    elif command == "resp-lua-set":
        resp_lua_set(args[0], int(args[1]), int(args[2]), int(args[3]), args[4], args[5], *args[6:8])
    elif command == "resp-module-touch":
        resp_module_touch(args[0], int(args[1]))
    elif command == "bench-command":
        bench_command(args[0], int(args[1]), args[2:])
    elif command == "round-order":
        print("\n".join(in_round_order(int(args[0]), args[1:])))
    elif command == "rps":
        rps()
    elif command == "cpu-seconds":
        cpu_seconds()
    elif command == "info":
        info(args)
    elif command == "handle":
        handle(args[0])
    elif command == "report":
        report(args[0], args[1])
    elif command == "user-agent":
        print(USER_AGENT)
    else:
        sys.exit(f"bench/helper.py: unknown subcommand {command!r}\n{__doc__}")


if __name__ == "__main__":
    main()
