"""Finding or starting a real Redis for the cluster tests (no mocks, never FLUSHALL).

``shared_redis_url()``: ``REDIS_URL`` if set (it must answer), else 127.0.0.1:6379 if it answers,
else a ``redis-server`` started on a free port for the test session, else a clear failure.
``RedisProcess`` is a private server a test may stop and restart (fault tests); every process
started here is stopped by its PID.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import redis
from helpers.net import free_port

START_S = 10.0


def free_cluster_port() -> int:
    """A free port whose cluster-bus port (+10000) is free too (ephemeral ports are too high)."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 30000)
        socks: list[socket.socket] = []
        try:
            for p in (port, port + 10000):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(sock)
                sock.bind(("127.0.0.1", p))
            return port
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no free port pair for a Redis Cluster node")


def answers(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


class RedisProcess:
    """``redis-server`` on 127.0.0.1:<port> without persistence; ``stop``/``start`` for restarts."""

    def __init__(self, port: int | None = None, extra: list[str] | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "no Redis for the cluster tests: set REDIS_URL, run one on 127.0.0.1:6379, "
                "or install redis-server"
            )
        self.binary = binary
        self.port = port or free_port()
        self.extra = extra or []
        self.dir = Path(tempfile.mkdtemp(prefix="rt-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        cmd = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        cmd += ["--appendonly", "no", "--dir", str(self.dir), *self.extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_S
        while not answers(self.url):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.kill()  # no persistence: nothing to save; a hard stop is what a crash looks like
        proc.wait(5)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def shared_redis() -> tuple[str, RedisProcess | None]:
    url = os.environ.get("REDIS_URL")
    if url:
        if not answers(url):
            raise RuntimeError(f"REDIS_URL={url} does not answer PING")
        return url, None
    if answers("redis://127.0.0.1:6379/0"):
        return "redis://127.0.0.1:6379/0", None
    proc = RedisProcess().start()
    return proc.url, proc


def unique_prefix() -> str:
    return f"rtt{uuid.uuid4().hex[:10]}:"


def delete_prefix(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


class RedisClusterProcesses:
    """A local Redis Cluster of ``shards`` masters (no replicas), made from the ``redis-server``
    binary: cluster mode on, slots split with ``redis-cli --cluster create``."""

    def __init__(self, shards: int = 3) -> None:
        self.servers = [
            RedisProcess(free_cluster_port(), ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
            for _ in range(shards)
        ]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.servers[0].port}/0"

    def start(self) -> RedisClusterProcesses:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is needed to form a local Redis Cluster")
        for server in self.servers:
            server.extra += ["--cluster-config-file", str(server.dir / "nodes.conf")]
            server.start()
        addrs = [f"127.0.0.1:{s.port}" for s in self.servers]
        subprocess.run(
            [cli, "--cluster", "create", *addrs, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        deadline = time.monotonic() + START_S
        while True:
            states = [self._info(s.port) for s in self.servers]
            if all("cluster_state:ok" in st for st in states):
                return self
            if time.monotonic() > deadline:
                self.cleanup()
                raise RuntimeError("the local Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.05)

    @staticmethod
    def _info(port: int) -> str:
        client = redis.Redis(port=port, socket_timeout=1)
        try:
            info = client.execute_command("CLUSTER INFO")  # parsed into a dict by redis-py
            return f"cluster_state:{info.get('cluster_state')}" if isinstance(info, dict) else str(info)
        finally:
            client.close()

    def cleanup(self) -> None:
        for server in self.servers:
            server.cleanup()
