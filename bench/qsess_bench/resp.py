"""A tiny RESP2 client: enough to pipeline commands to redis-server and read their replies."""

from __future__ import annotations

import socket
import sys
import time


def encode(*words: str | bytes | int) -> bytes:
    """One command in RESP, each word as a bulk string."""
    parts = [b"*%d\r\n" % len(words)]
    for word in words:
        data = word if isinstance(word, bytes) else str(word).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class Redis:
    """One connection to a server on 127.0.0.1; error replies raise RuntimeError."""

    def __init__(self, port: int):
        self.socket = socket.create_connection(("127.0.0.1", port))
        self.reader = self.socket.makefile("rb")

    encode = staticmethod(encode)

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
            return self.reader.read(length + 2)[:-2]
        if kind == b"*":
            length = int(rest)
            return None if length < 0 else [self.read() for _ in range(length)]
        raise RuntimeError(f"unexpected reply {line!r}")

    def call(self, *words):
        self.socket.sendall(encode(*words))
        return self.read()

    def pipeline(self, commands: list[bytes]) -> None:
        self.socket.sendall(b"".join(commands))
        for _ in commands:
            self.read()


def connect(port: int, who: str) -> Redis:
    """A connection once the server answers PING (10 s at most); `who` names the caller in the exit message."""
    for _ in range(200):
        try:
            redis = Redis(port)
            redis.call("PING")
            return redis
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{who}: redis-server on port {port} did not start; see its redis.log")
