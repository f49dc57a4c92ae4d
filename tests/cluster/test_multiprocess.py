"""Nodes as separate processes on a real Redis, real `faye` clients connected to different nodes."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from realtime.publisher import Publisher

from .conftest import eventually
from .processes import FayeDriver, NodeProcess
from .redis_server import RedisProcess, delete_prefix, unique_prefix

pytestmark = [pytest.mark.redis, pytest.mark.node, pytest.mark.slow]

HB, TTL = "0.25", "1.5"


def broker_url(redis_url: str, prefix: str, ttl: str = TTL) -> str:
    return f"{redis_url}?key_prefix={prefix}&heartbeat_s={HB}&ttl_s={ttl}"


def start_nodes(url: str, log_dir: Path, ids: list[str]) -> list[NodeProcess]:
    nodes = [NodeProcess(url, node_id, log_dir) for node_id in ids]
    try:
        for node in nodes:
            node.wait_ready()
    except RuntimeError:
        for node in nodes:
            node.stop()
        raise
    return nodes


@pytest.fixture(scope="module")
def three_nodes(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, list[NodeProcess]]]:
    prefix = unique_prefix()
    url = broker_url(redis_url, prefix)
    nodes = start_nodes(url, tmp_path_factory.mktemp("nodes"), ["n1", "n2", "n3"])
    try:
        yield url, nodes
    finally:
        for node in nodes:
            node.stop()
        delete_prefix(redis_url, prefix)


@pytest.fixture
async def faye() -> AsyncIterator[FayeDriver]:
    try:
        driver = await FayeDriver.start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield driver
    finally:
        await driver.close()


async def cluster_publisher(url: str, expect: set[str]) -> Publisher:
    pub = Publisher(url, heartbeat_s=0.25, ttl_s=1.5)
    await pub.start()
    await eventually(lambda: expect <= set(pub.nodes), timeout_s=5, what=f"nodes {expect} visible")
    return pub


async def test_faye_clients_on_different_nodes_get_each_message_once(
    three_nodes: tuple[str, list[NodeProcess]], faye: FayeDriver
) -> None:
    url, (n1, n2, n3) = three_nodes
    faye.send(cmd="client", name="exact", url=n1.url)
    faye.send(cmd="client", name="star", url=n2.url, transport="long-polling")
    faye.send(cmd="client", name="deep", url=n3.url)
    faye.send(cmd="client", name="pub", url=n3.url)
    faye.send(cmd="subscribe", name="exact", channel="/room/a")
    faye.send(cmd="subscribe", name="star", channel="/room/*")
    faye.send(cmd="subscribe", name="deep", channel="/room/**")
    faye.send(cmd="subscribe", name="deep", channel="/other")
    await faye.wait_for(lambda e: e["event"] == "subscribed", count=4)
    await asyncio.sleep(0.2)  # well above the measured propagation lag (test_subscribe_lag)
    for i in range(20):
        faye.send(cmd="publish", name="pub", channel="/room/a", data={"i": i})
    faye.send(cmd="publish", name="exact", channel="/room/b", data={"from": "n1"})
    pub = await cluster_publisher(url, {"n1", "n2", "n3"})
    try:
        await pub.publish("/room/deep/x", {"from": "backend"})
    finally:
        await pub.close()
    await faye.wait_for(lambda e: e["event"] == "message" and e["name"] == "deep", count=22)
    await asyncio.sleep(0.3)  # duplicates, if any, would arrive by now
    exact = faye.messages("exact")
    star = faye.messages("star")
    deep = faye.messages("deep")
    assert [m["data"] for m in exact] == [{"i": i} for i in range(20)]  # once each, in order
    assert [m["data"] for m in star if m["channel"] == "/room/a"] == [{"i": i} for i in range(20)]
    assert [m["data"] for m in star if m["channel"] == "/room/b"] == [{"from": "n1"}]
    assert len(star) == 21  # /room/deep/x does not match /room/*
    assert sorted(m["channel"] for m in deep) == ["/room/a"] * 20 + ["/room/b", "/room/deep/x"]
    assert faye.messages("pub") == []


async def test_subscribe_is_routable_from_other_nodes_within_100ms_p99(
    three_nodes: tuple[str, list[NodeProcess]], faye: FayeDriver
) -> None:
    _, (n1, n2, _n3) = three_nodes
    faye.send(cmd="client", name="sub", url=n1.url)
    faye.send(cmd="client", name="pub", url=n2.url)
    faye.send(cmd="subscribe", name="pub", channel="/warmup")
    await faye.wait_for(lambda e: e["event"] == "subscribed")
    faye.send(cmd="lag", sub="sub", pub="pub", samples=60, prefix="/lag")
    (result,) = await faye.wait_for(lambda e: e["event"] == "lag", timeout_s=40)
    lags = result["ms"]
    assert None not in lags, lags
    lags.sort()
    p50, p99 = lags[len(lags) // 2], lags[int(len(lags) * 0.99) - 1]
    print(
        f"subscribe-to-routable lag over {len(lags)} samples: p50 {p50} ms, p99 {p99} ms, max {lags[-1]} ms"
    )
    assert p99 <= 100, lags


async def test_sigkill_drops_out_after_ttl_and_sigterm_withdraws_at_once(
    redis_url: str, tmp_path: Path, faye: FayeDriver
) -> None:
    prefix = unique_prefix()
    url = broker_url(redis_url, prefix, ttl="3")
    nodes = start_nodes(url, tmp_path, ["k1", "k2", "k3"])
    pub: Publisher | None = None
    try:
        k1, k2, k3 = nodes
        pub = await cluster_publisher(url, {"k1", "k2", "k3"})
        faye.send(cmd="client", name="c1", url=k1.url)
        faye.send(cmd="subscribe", name="c1", channel="/alive")
        await faye.wait_for(lambda e: e["event"] == "subscribed")
        k3.signal(signal.SIGKILL)
        t0 = time.monotonic()
        await asyncio.sleep(1.0)
        assert "k3" in pub.nodes  # no withdrawal: only the heartbeat TTL can remove it
        await eventually(lambda: "k3" not in pub.nodes, timeout_s=3.5, what="k3 dropped after its TTL")
        killed_after = time.monotonic() - t0
        k2.signal(signal.SIGTERM)
        t1 = time.monotonic()
        await eventually(lambda: "k2" not in pub.nodes, timeout_s=1.0, what="k2 withdrawn on SIGTERM")
        termed_after = time.monotonic() - t1
        print(f"SIGKILL: out of routing after {killed_after:.2f} s (TTL 3 s); SIGTERM: {termed_after:.3f} s")
        assert termed_after < 1.0 < killed_after
        await pub.publish("/alive", "still")
        await faye.wait_for(lambda e: e["event"] == "message" and e["data"] == "still")
    finally:
        if pub is not None:
            await pub.close()
        for node in nodes:
            node.stop()
        delete_prefix(redis_url, prefix)


async def test_redis_restart_cross_node_delivery_resumes(
    private_redis: RedisProcess, tmp_path: Path, faye: FayeDriver
) -> None:
    url = broker_url(private_redis.url, "rtm:")
    nodes = start_nodes(url, tmp_path, ["r1", "r2"])
    try:
        r1, r2 = nodes
        faye.send(cmd="client", name="c1", url=r1.url)
        faye.send(cmd="client", name="c2", url=r2.url)
        faye.send(cmd="subscribe", name="c1", channel="/r")
        faye.send(cmd="subscribe", name="c2", channel="/local")
        await faye.wait_for(lambda e: e["event"] == "subscribed", count=2)
        await asyncio.sleep(0.2)
        faye.send(cmd="publish", name="c2", channel="/r", data="before")
        await faye.wait_for(lambda e: e["event"] == "message" and e["data"] == "before")
        private_redis.stop()
        # Local clients are still served while Redis is gone.
        faye.send(cmd="publish", name="c2", channel="/local", data="local")
        await faye.wait_for(lambda e: e["event"] == "message" and e["data"] == "local")
        await asyncio.sleep(0.5)
        private_redis.start()
        deadline = time.monotonic() + 10
        n = 0
        while not [m for m in faye.messages("c1") if str(m["data"]).startswith("after")]:
            assert time.monotonic() < deadline, "cross-node delivery did not resume"
            faye.send(cmd="publish", name="c2", channel="/r", data=f"after{n}")
            n += 1
            await asyncio.sleep(0.2)
        assert all(node.proc.poll() is None for node in nodes)
    finally:
        for node in nodes:
            node.stop()


async def test_nodes_on_a_redis_cluster_use_sharded_pubsub(
    redis_cluster_url: str, tmp_path: Path, faye: FayeDriver
) -> None:
    url = broker_url(redis_cluster_url, unique_prefix())
    nodes = start_nodes(url, tmp_path, ["s1", "s2"])
    try:
        s1, s2 = nodes
        faye.send(cmd="client", name="sub", url=s1.url)
        faye.send(cmd="client", name="pub", url=s2.url, transport="long-polling")
        faye.send(cmd="subscribe", name="sub", channel="/shard/*")
        await faye.wait_for(lambda e: e["event"] == "subscribed")
        await asyncio.sleep(0.2)
        for i in range(5):
            faye.send(cmd="publish", name="pub", channel="/shard/x", data=i)
        await faye.wait_for(lambda e: e["event"] == "message" and e["name"] == "sub", count=5)
        await asyncio.sleep(0.2)
        assert [m["data"] for m in faye.messages("sub")] == [0, 1, 2, 3, 4]
        assert "redis+cluster" in url and "Traceback" not in s1.log() + s2.log()
    finally:
        for node in nodes:
            node.stop()
