"""The Broker contract (``realtime.broker.base``), run against MemoryBroker and RedisBroker.

Payloads are engine envelopes (``<channel>\\n<body>``); the keys passed to ``publish`` are the
channel's ``expand()``, as the engine passes them.
"""

from __future__ import annotations

import asyncio

import pytest

from realtime.bayeux.channels import expand
from realtime.broker.base import NodeUnavailable

from .conftest import Cluster, eventually, settle


def envelope(channel: str, body: str) -> bytes:
    return channel.encode() + b"\n" + body.encode()


async def test_two_nodes_delivered_exactly_once_and_never_to_self(cluster: Cluster) -> None:
    a, b, c = await cluster.nodes(3)
    a.broker.key_added("/chat/room")
    await cluster.routable("/chat/room", a)
    b.broker.publish(expand("/chat/room"), envelope("/chat/room", "one"))
    b.broker.publish(expand("/chat/room"), envelope("/chat/room", "two"))
    a.broker.publish(expand("/chat/room"), envelope("/chat/room", "from-a"))
    await eventually(lambda: len(a.received) >= 2, what="delivery to a")
    await settle(cluster.kind)
    assert a.received == [envelope("/chat/room", "one"), envelope("/chat/room", "two")]
    assert b.received == []  # b holds nothing; a's own publish never comes back to a
    assert c.received == []


async def test_wildcard_holders_receive_matching_channels(cluster: Cluster) -> None:
    a, b, c = await cluster.nodes(3)
    a.broker.key_added("/news/*")
    c.broker.key_added("/news/**")
    await cluster.routable("/news/*", a)
    await cluster.routable("/news/**", c)
    b.broker.publish(expand("/news/today"), envelope("/news/today", "x"))
    b.broker.publish(expand("/news/sport/today"), envelope("/news/sport/today", "y"))
    await eventually(lambda: len(c.received) >= 2, what="delivery to c")
    await settle(cluster.kind)
    assert a.received == [envelope("/news/today", "x")]
    assert c.received == [envelope("/news/today", "x"), envelope("/news/sport/today", "y")]


async def test_order_is_kept_per_publishing_node(cluster: Cluster) -> None:
    a, b, c = await cluster.nodes(3)
    for key in ("/a", "/b"):
        a.broker.key_added(key)
        await cluster.routable(key, a)
    expected = []
    for i in range(300):
        channel = "/a" if i % 3 else "/b"
        expected.append(envelope(channel, f"b{i}"))
        b.broker.publish(expand(channel), expected[-1])
        c.broker.publish(expand("/a"), envelope("/a", f"c{i}"))
        if i % 50 == 0:
            await asyncio.sleep(0)  # spread over several ticks / frames
    await eventually(lambda: len(a.received) >= 600, what="600 deliveries")
    await settle(cluster.kind)
    assert len(a.received) == 600
    assert [e for e in a.received if b"\nb" in e] == expected
    assert [e for e in a.received if b"\nc" in e] == [envelope("/a", f"c{i}") for i in range(300)]


async def test_key_removal_stops_delivery(cluster: Cluster) -> None:
    a, b = await cluster.nodes(2)
    a.broker.key_added("/x")
    await cluster.routable("/x", a)
    a.broker.key_removed("/x")
    await cluster.routable("/x", a, present=False)
    b.broker.publish(expand("/x"), envelope("/x", "late"))
    await settle(cluster.kind)
    assert a.received == []


async def test_close_withdraws_before_ttl(cluster: Cluster) -> None:
    a, b = await cluster.nodes(2)
    a.broker.key_added("/x")
    await cluster.routable("/x", a)
    # b seeing a's filter says nothing about a having seen b's announce yet: wait for both.
    await eventually(lambda: b.broker.is_live(a.node_id) and a.broker.is_live(b.node_id), what="both live")
    assert a.broker.is_live(a.node_id)
    await a.broker.close()
    # Well within the heartbeat TTL: this is the announced withdrawal, not an expiry.
    await eventually(lambda: not b.broker.is_live(a.node_id), timeout_s=0.3, what="withdrawal")
    b.broker.publish(expand("/x"), envelope("/x", "after-close"))
    await settle(cluster.kind)
    assert a.received == []


async def test_forward_round_trip_and_unavailable(cluster: Cluster) -> None:
    seen: list[bytes] = []

    async def serve(payload: bytes) -> bytes:
        seen.append(payload)
        if payload == b"slow":
            await asyncio.sleep(1.0)
        return b"answer to " + payload

    a = await cluster.node("a", serve)
    b = await cluster.node("b")
    await eventually(lambda: b.broker.is_live("a"), what="a visible to b")
    assert await b.broker.forward("a", b"question", 2.0) == b"answer to question"
    results = await asyncio.gather(*(b.broker.forward("a", b"q%d" % i, 2.0) for i in range(20)))
    assert results == [b"answer to q%d" % i for i in range(20)]
    with pytest.raises(NodeUnavailable):
        await b.broker.forward("nosuchnode", b"question", 0.5)
    with pytest.raises(NodeUnavailable):
        await b.broker.forward("a", b"slow", 0.2)
    await a.broker.close()
    await eventually(lambda: not b.broker.is_live("a"), timeout_s=0.3, what="withdrawal")
    with pytest.raises(NodeUnavailable):
        await b.broker.forward("a", b"question", 0.5)
    assert seen[0] == b"question"
