"""Fixtures of the cluster tests: a real Redis, a unique key prefix per test, brokers.

``brokers`` is parametrised over ``memory`` and ``redis``: the contract suite runs the same
assertions against ``MemoryBroker`` and ``RedisBroker``. Its ``nodes(n)`` starts n brokers
recording what they receive; ``routable(key, holder)`` waits (bounded) until every other node
routes ``key`` to ``holder`` (a no-op for the memory hub, which is exact and synchronous).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import pytest

from realtime.broker.base import ServeCallback
from realtime.broker.memory import MemoryBroker, MemoryHub
from realtime.broker.redis import RedisBroker

from .redis_server import RedisClusterProcesses, RedisProcess, delete_prefix, shared_redis, unique_prefix

HEARTBEAT_S = 0.2
TTL_S = 0.8
PROPAGATION_WAIT_S = 2.0


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    try:
        url, proc = shared_redis()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield url
    finally:
        if proc is not None:
            proc.cleanup()


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    p = unique_prefix()
    yield p
    delete_prefix(redis_url, p)


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """A three-shard Redis Cluster of the test session's own (sharded pub/sub)."""
    try:
        procs = RedisClusterProcesses(3).start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        pytest.fail(f"cannot start a local Redis Cluster: {exc}")
    try:
        yield procs.url
    finally:
        procs.cleanup()


@pytest.fixture
def private_redis() -> Iterator[RedisProcess]:
    """A Redis of this test's own, which it may stop and restart."""
    try:
        proc = RedisProcess().start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield proc
    finally:
        proc.cleanup()


@dataclass
class Node:
    broker: MemoryBroker | RedisBroker
    received: list[bytes] = field(default_factory=list)

    @property
    def node_id(self) -> str:
        return self.broker.node_id


@dataclass
class Cluster:
    kind: str
    url: str
    prefix: str
    hub: MemoryHub = field(default_factory=MemoryHub)
    nodes_started: list[Node] = field(default_factory=list)

    def make(self, node_id: str) -> MemoryBroker | RedisBroker:
        if self.kind == "memory":
            return MemoryBroker(node_id, self.hub)
        # "redis" and "redis-cluster" differ only by URL (redis+cluster:// uses sharded pub/sub)
        return RedisBroker(self.url, node_id, key_prefix=self.prefix, heartbeat_s=HEARTBEAT_S, ttl_s=TTL_S)

    async def node(self, node_id: str, serve: ServeCallback | None = None) -> Node:
        node = Node(self.make(node_id))
        await node.broker.start(node.received.append, serve)
        self.nodes_started.append(node)
        return node

    async def nodes(self, n: int) -> list[Node]:
        return [await self.node(f"n{i}") for i in range(n)]

    async def routable(self, key: str, holder: Node, present: bool = True) -> None:
        """Wait until every other started node routes (or no longer routes) ``key`` to ``holder``."""
        if self.kind == "memory":
            return
        others = [n for n in self.nodes_started if n is not holder and isinstance(n.broker, RedisBroker)]
        await eventually(lambda: all(_routes(n, holder.node_id, key) == present for n in others))

    async def close(self) -> None:
        for node in self.nodes_started:
            await node.broker.close()


def _routes(node: Node, holder: str, key: str) -> bool:
    assert isinstance(node.broker, RedisBroker)
    replica = node.broker.replicas.table.get(holder)
    return replica is not None and replica.contains(key)


async def eventually(
    predicate: Callable[[], bool], timeout_s: float = PROPAGATION_WAIT_S, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout_s} s")
        await asyncio.sleep(0.005)


async def settle(kind: str) -> None:
    """Long enough for anything in flight to arrive (both brokers deliver on a later tick)."""
    await asyncio.sleep(0.01 if kind == "memory" else 0.15)


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("redis-cluster", marks=[pytest.mark.redis, pytest.mark.slow]),
    ]
)
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("prefix")
    elif request.param == "redis-cluster":
        url = request.getfixturevalue("redis_cluster_url")
        prefix = unique_prefix()
    else:
        url, prefix = "", ""
    c = Cluster(request.param, url, prefix)
    try:
        yield c
    finally:
        await c.close()
