"""Real servers for tests and benchmarks: redis-server with the qsess module, PostgreSQL, qsess-syncd.

Each runs on a free loopback port and is stopped by its own pid. Redis and PostgreSQL are started the way
the benchmarks start them (bench/qsess_bench/servers.py), so the project has one launcher of each:
PostgreSQL comes from the end-to-end harness's `qsess-pg-cluster` (QSESS_PG_CLUSTER_PATH, or built with
cargo when unset), which as root runs it as the `postgres` user. The module and daemon come from
QSESS_MODULE_PATH and QSESS_SYNCD_PATH, the server binary from QSESS_TEST_REDIS_SERVER (default
redis-server).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))

from qsess_bench.servers import Cluster, RedisCluster, key_slot, postgres_launcher, start_redis


def _wait(check, what: str, timeout: float = 30.0, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not start in {timeout}s\n{tail}")


class Stack:
    """Starts what is asked for; `stop()` stops only those processes."""

    def __init__(self, *, postgres: bool = True, syncd: bool = True, module: str | None = None):
        self.dir = Path(tempfile.mkdtemp(prefix="qsess-py-"))
        self.module = module or os.environ.get("QSESS_MODULE_PATH")
        self.syncd_bin = os.environ.get("QSESS_SYNCD_PATH")
        self.redis_bin = os.environ.get("QSESS_TEST_REDIS_SERVER") or "redis-server"
        self.want_pg = postgres
        self.want_syncd = syncd and postgres
        self.redis_port = 0
        self.pg_port = 0
        self.redis_proc: subprocess.Popen | None = None
        self.syncd_proc: subprocess.Popen | None = None
        self.cluster: Cluster | None = None

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def database_url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.pg_port}/postgres"

    def start(self) -> Stack:
        try:
            self._start_redis()
            if self.want_pg:
                self._start_postgres()
            if self.want_syncd:
                self._start_syncd()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_redis(self) -> None:
        if not self.module:
            raise RuntimeError("set QSESS_MODULE_PATH to the qsess module (libqsess.so)")
        log = self.dir / "redis.log"
        self.redis_proc, self.redis_port = start_redis(self.module, self.dir, server=self.redis_bin)

        def up() -> bool:
            if self.redis_proc.poll() is not None:
                raise RuntimeError(f"redis-server exited\n{log.read_text(errors='replace')}")
            with socket.create_connection(("127.0.0.1", self.redis_port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")

        _wait(up, "redis-server", log=log)

    def _start_postgres(self) -> None:
        launcher = postgres_launcher()
        if not launcher:
            raise RuntimeError("cargo did not build qsess-pg-cluster; set QSESS_PG_CLUSTER_PATH to it")
        self.cluster = Cluster(launcher, "qsess tests")
        self.pg_port = self.cluster.port

    def _start_syncd(self) -> None:
        if not self.syncd_bin:
            raise RuntimeError("set QSESS_SYNCD_PATH to qsess-syncd")
        log = self.dir / "syncd.log"
        subprocess.run(
            [self.syncd_bin, "migrate", "--database-url", self.database_url],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        env = {**os.environ, "QSESS_LOG": os.environ.get("QSESS_LOG", "warn")}
        argv = [
            self.syncd_bin,
            "run",
            "--redis-url",
            f"redis://127.0.0.1:{self.redis_port}/",
            "--database-url",
            self.database_url,
            "--batch-wait",
            "2ms",
        ]
        self.syncd_proc = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)

        def attached() -> bool:
            if self.syncd_proc.poll() is not None:
                raise RuntimeError(f"qsess-syncd exited\n{log.read_text(errors='replace')}")
            import redis

            info = redis.Redis(port=self.redis_port).info("qsess")
            return bool(int(info.get("qsess_loader_attached", 0)))

        _wait(attached, "qsess-syncd", log=log)

    def stop(self) -> None:
        for proc in (self.syncd_proc, self.redis_proc):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.syncd_proc = self.redis_proc = None
        if self.cluster is not None:
            self.cluster.stop()
        self.cluster = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def logs(self) -> str:
        out = []
        # PostgreSQL's log stays in the launcher's own directory, which it deletes on stop.
        for name in ("redis.log", "syncd.log"):
            path = self.dir / name
            if path.exists():
                out.append(f"--- {name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(out)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    """`python servers.py [--redis-only] -- command ...`: run a command beside a fresh stack."""
    redis_only = "--redis-only" in argv
    command = argv[argv.index("--") + 1 :] if "--" in argv else []
    with Stack(postgres=not redis_only) as stack:
        env = {**os.environ, "QSESS_REDIS_URL": stack.redis_url}
        if not redis_only:
            env["QSESS_DATABASE_URL"] = stack.database_url
        result = subprocess.run(command, env=env)
        if result.returncode:
            sys.stderr.write(stack.logs() + "\n")
        return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


def start_redis_cluster(module: str, workdir: Path) -> RedisCluster:
    """Three primaries with the module, no replicas: the benchmarks' cluster launcher."""
    return RedisCluster(module, workdir, who="qsess tests", primaries=3, node_timeout_ms=5000)


__all__ = ["Stack", "key_slot", "start_redis_cluster"]
