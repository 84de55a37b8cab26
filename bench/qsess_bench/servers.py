"""The processes a benchmark runs: the release build, redis-server with the module, PostgreSQL, qsess-syncd.

PostgreSQL is started by the end-to-end harness's own launcher (`tests/src/bin/qsess-pg-cluster.rs`, over
`tests/src/postgres.rs`), so the project has one way to run a throwaway cluster, as the `postgres` OS
user when root, whichever language asks for it. The Python client's tests (clients/python/tests/servers.py)
start Redis and PostgreSQL with `start_redis` and `Cluster` from here too.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A free loopback port, never Redis's or PostgreSQL's default."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port not in (6379, 5432):
            return port


def cargo_artifacts(arguments: list[str]) -> dict[str, str]:
    """Runs `cargo build <arguments>` and maps each built target's name to its library or executable."""
    command = ["cargo", "build", *arguments, "--message-format=json-render-diagnostics"]
    output = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    artifacts: dict[str, str] = {}
    for line in output.splitlines():
        message = json.loads(line)
        if message.get("reason") != "compiler-artifact":
            continue
        target = message["target"]
        if "cdylib" in target["kind"]:
            artifacts[target["name"]] = next(name for name in message["filenames"] if name.endswith(".so"))
        elif message.get("executable"):
            artifacts[target["name"]] = message["executable"]
    return artifacts


def build(who: str) -> dict[str, str]:
    """The release module, daemon and Postgres-ceiling example, and the harness's PostgreSQL launcher."""
    release = cargo_artifacts(
        ["--release", "-p", "qsess-module", "-p", "qsess-syncd", "--bins", "--lib", "--example", "postgres_ceiling"]
    )
    artifacts = {
        "module": release.get("qsess"),
        "daemon": release.get("qsess-syncd"),
        "ceiling": release.get("postgres_ceiling"),
        "postgres": postgres_launcher(),
    }
    missing = sorted(name for name, path in artifacts.items() if not path)
    if missing:
        sys.exit(f"{who}: cargo did not report {missing}")
    return artifacts


def postgres_launcher() -> str | None:
    """The harness's PostgreSQL launcher: QSESS_PG_CLUSTER_PATH when set, else what cargo builds (debug)."""
    return os.environ.get("QSESS_PG_CLUSTER_PATH") or cargo_artifacts(
        ["-p", "qsess-tests", "--bin", "qsess-pg-cluster"]
    ).get("qsess-pg-cluster")


def start_redis(
    module: str, workdir: Path, *module_arguments: str, server: str = "redis-server"
) -> tuple[subprocess.Popen, int]:
    """`server` (redis-server or another build of it, such as valkey-server) with the module on a free loopback
    port, no persistence, logging to `workdir`/redis.log; returns it and its port."""
    port = free_port()
    process = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--logfile",
            str(workdir / "redis.log"),
            "--loadmodule",
            module,
            *module_arguments,
        ]
    )
    return process, port


class Cluster:
    """A private PostgreSQL cluster from the harness's launcher, stopped (and deleted) by `stop`."""

    def __init__(self, launcher: str, who: str):
        self.launcher = subprocess.Popen([launcher], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.launcher.stdout.readline().split()
        if len(line) != 3:
            sys.exit(f"{who}: the PostgreSQL launcher did not start a cluster (it printed {line!r})")
        self.postmaster_pid, self.port, self.url = int(line[0]), int(line[1]), line[2]

    @staticmethod
    def postgres_version() -> str:
        """What the newest installed server says to `postgres --version`, e.g. `postgres (PostgreSQL) 16.4`."""
        bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda path: int(path.parent.name))[-1]
        return subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True).stdout.strip()

    def sql(self, query: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["psql", "-X", "-q", "-t", "-A", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-c", query],
            capture_output=True,
            text=True,
            check=check,
        )

    def value(self, query: str) -> str:
        return self.sql(query).stdout.strip()

    def stop(self) -> None:
        self.launcher.stdin.close()
        self.launcher.wait(timeout=60)


class Daemon:
    """qsess-syncd mirroring `redis_port` into `database_url`, with its metrics on a free port."""

    def __init__(self, binary: str, redis_port: int, database_url: str, workdir: Path, who: str):
        self.metrics_port = free_port()
        self.log = open(workdir / "syncd.log", "a")
        self.process = subprocess.Popen(
            [
                binary,
                "run",
                "--redis-url",
                f"redis://127.0.0.1:{redis_port}/",
                "--database-url",
                database_url,
                "--metrics-addr",
                f"127.0.0.1:{self.metrics_port}",
                "--skip-migrations",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        for _ in range(200):
            try:
                self.metrics()
                return
            except OSError:
                time.sleep(0.05)
        sys.exit(f"{who}: qsess-syncd did not start; see syncd.log")

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


def redis_server_version(server: str = "redis-server") -> str:
    """The version `server --version` reports, as it spells it (`v=7.2.4`)."""
    return subprocess.run([server, "--version"], capture_output=True, text=True).stdout.split()[2]


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
