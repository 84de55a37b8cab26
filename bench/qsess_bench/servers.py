"""The processes a benchmark runs: the release build, redis-server with the module (alone, or three of them as a
Redis Cluster), PostgreSQL, qsess-syncd.

PostgreSQL is started by the end-to-end harness's own launcher (`tests/src/bin/qsess-pg-cluster.rs`, over
`tests/src/postgres.rs`), so the project has one way to run a throwaway cluster, as the `postgres` OS
user when root, whichever language asks for it. The Python client's tests (clients/python/tests/servers.py)
start Redis and PostgreSQL with `start_redis` and `Cluster` from here too.
"""

from __future__ import annotations

import binascii
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from qsess_bench.resp import Redis, connect

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
    module: str,
    workdir: Path,
    *module_arguments: str,
    server: str = "redis-server",
    port: int | None = None,
    server_arguments: tuple[str, ...] = (),
) -> tuple[subprocess.Popen, int]:
    """`server` (redis-server or another build of it, such as valkey-server) with the module on `port` (a free
    loopback port when None), no persistence, `server_arguments` before the module's, logging to
    `workdir`/redis.log; returns it and its port."""
    port = port or free_port()
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
            *server_arguments,
            "--loadmodule",
            module,
            *module_arguments,
        ]
    )
    return process, port


CLUSTER_SLOTS = 16384
BUS_PORT_OFFSET = 10_000  # a cluster node's bus listens on its port + 10000 (fixed by Redis)


def key_slot(key: bytes | str) -> int:
    """The Redis Cluster hash slot of a key: CRC16 (XMODEM) of its hash tag (the first non-empty `{...}`) or of
    the whole key, mod 16384."""
    data = key.encode() if isinstance(key, str) else key
    start = data.find(b"{")
    if start >= 0:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    return binascii.crc_hqx(data, 0) % CLUSTER_SLOTS


def free_cluster_port(taken: set[int]) -> int:
    """A free loopback port whose cluster bus port (+10000) is free too, neither of them in `taken`."""
    for _ in range(1000):
        port = free_port()
        bus = port + BUS_PORT_OFFSET
        if bus > 65535 or port in taken or bus in taken or bus in (6379, 5432):
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", bus))
            except OSError:
                continue
        return port
    sys.exit("bench: found no loopback port whose cluster bus port (+10000) was free in 1000 attempts")


class RedisCluster:
    """A throwaway Redis Cluster of `primaries` redis-server nodes, no replicas, every one with the module, joined
    by `redis-cli --cluster create`; `stop` ends the nodes it started, by their PIDs. Each node's nodes.conf
    and redis.log are in `workdir`/<port>."""

    def __init__(self, module: str, workdir: Path, who: str, primaries: int = 3, node_timeout_ms: int = 5000):
        self.who = who
        self.processes: list[subprocess.Popen] = []
        self.ports: list[int] = []
        self.connections: dict[int, Redis] = {}
        taken: set[int] = set()
        try:
            for _ in range(primaries):
                port = free_cluster_port(taken)
                taken |= {port, port + BUS_PORT_OFFSET}
                node_dir = workdir / str(port)
                node_dir.mkdir()
                cluster_arguments = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
                cluster_arguments += ("--cluster-node-timeout", str(node_timeout_ms))
                process, _ = start_redis(module, node_dir, port=port, server_arguments=cluster_arguments)
                self.processes.append(process)
                self.ports.append(port)
            for port in self.ports:
                self.node(port)  # answers PING
            create = ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{port}" for port in self.ports)]
            created = subprocess.run(
                [*create, "--cluster-replicas", "0", "--cluster-yes"], capture_output=True, text=True
            )
            if created.returncode != 0:
                sys.exit(f"{who}: redis-cli --cluster create failed:\n{created.stdout}{created.stderr}")
            self.wait_until_ok()
        except BaseException:
            self.stop()
            raise

    def node(self, port: int) -> Redis:
        """A connection to the node on `port` (one per node, kept open)."""
        if port not in self.connections:
            self.connections[port] = connect(port, self.who)
        return self.connections[port]

    def slots(self) -> dict[int, list[tuple[int, int]]]:
        """Each primary's port and the slot ranges it serves, by CLUSTER SLOTS of the first node."""
        owners: dict[int, list[tuple[int, int]]] = {port: [] for port in self.ports}
        for start, end, primary, *_ in self.node(self.ports[0]).call("CLUSTER", "SLOTS"):
            owners.setdefault(int(primary[1]), []).append((int(start), int(end)))
        return {port: sorted(ranges) for port, ranges in owners.items()}

    def wait_until_ok(self, timeout: float = 60.0) -> None:
        """Until every node says cluster_state:ok and they all answer CLUSTER SLOTS alike."""
        deadline = time.monotonic() + timeout
        while True:
            states = [self.node(port).call("CLUSTER", "INFO").decode() for port in self.ports]
            views = {repr(sorted(map(repr, self.node(port).call("CLUSTER", "SLOTS")))) for port in self.ports}
            if all("cluster_state:ok" in state for state in states) and len(views) == 1:
                return
            if time.monotonic() > deadline:
                sys.exit(f"{self.who}: the cluster on ports {self.ports} did not reach cluster_state:ok in {timeout} s")
            time.sleep(0.2)

    def stop(self) -> None:
        for redis in self.connections.values():
            redis.socket.close()
        self.connections = {}
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(timeout=60)
        self.processes = []


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


def cpu_snapshot(redis_pid: int, daemon: Daemon | None, cluster: Cluster) -> dict[str, float]:
    """CPU seconds so far of redis-server, qsess-syncd, PostgreSQL (postmaster, its live and reaped
    backends) and this process (the load generator)."""
    postmaster = cluster.postmaster_pid
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
    return {
        "redis": process_cpu_seconds(redis_pid),
        "daemon": process_cpu_seconds(daemon.process.pid) if daemon else 0.0,
        "postgres": postgres,
        "generator": own.user + own.system,
    }


def cpu_use(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    """Cores each part kept busy between two snapshots."""
    return {name: (after[name] - before[name]) / seconds for name in before}
