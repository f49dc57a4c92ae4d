"""RedisBroker beyond the shared contract: batching, replica resync, liveness, Redis faults."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from realtime.bayeux.channels import expand
from realtime.broker.redis import RedisBroker
from realtime.publisher import Publisher

from .conftest import HEARTBEAT_S, TTL_S, eventually, settle
from .redis_server import RedisProcess

pytestmark = pytest.mark.redis


class Rec:
    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker
        self.received: list[bytes] = []

    async def start(self) -> Rec:
        await self.broker.start(self.received.append)
        return self


def make(url: str, prefix: str, node_id: str, **kw: object) -> RedisBroker:
    opts: dict[str, object] = {"heartbeat_s": HEARTBEAT_S, "ttl_s": TTL_S}
    opts.update(kw)
    return RedisBroker(url, node_id, key_prefix=prefix, **opts)  # type: ignore[arg-type]


def routes(node: RedisBroker, holder: str, key: str) -> bool:
    replica = node.replicas.table.get(holder)
    return replica is not None and replica.contains(key)


def env(channel: str, body: str = "x") -> bytes:
    return channel.encode() + b"\n" + body.encode()


async def test_fanout_to_10k_channels_is_one_frame_per_target_node(redis_url: str, prefix: str) -> None:
    a = await Rec(make(redis_url, prefix, "a")).start()
    b = await Rec(make(redis_url, prefix, "b")).start()
    c = await Rec(make(redis_url, prefix, "c")).start()
    try:
        names = [f"/feed/u{i}" for i in range(10_000)]
        for i, name in enumerate(names):
            (a if i % 2 else c).broker.key_added(name)
        assert a.broker.filter_rebuilds > 0  # 5000 keys outgrow the initial filter
        await eventually(lambda: routes(b.broker, "a", names[-1]) and routes(b.broker, "c", names[0]))
        await eventually(lambda: all(routes(b.broker, "a", n) for n in names[1::2]))
        sent_before = b.broker.frames_sent
        for name in names:
            b.broker.publish(expand(name), env(name))
        await eventually(lambda: len(a.received) >= 5000 and len(c.received) >= 5000, timeout_s=5)
        await settle("redis")
        assert b.broker.frames_sent - sent_before == 2
        odd = {env(n) for n in names[1::2]}
        assert odd <= set(a.received)
        assert len(a.received) - 5000 <= 20  # false positives only (the engine drops them)
        assert len(c.received) - 5000 <= 20
    finally:
        for n in (a, b, c):
            await n.broker.close()


async def test_missed_delta_forces_a_snapshot_reload(redis_url: str, prefix: str) -> None:
    a = await Rec(make(redis_url, prefix, "a")).start()
    b = await Rec(make(redis_url, prefix, "b")).start()
    try:
        a.broker.key_added("/k1")
        await eventually(lambda: routes(b.broker, "a", "/k1"))
        loads = b.broker.replicas.snapshot_loads
        replicas = b.broker.replicas
        apply_delta = replicas._on_delta
        lost: list[bytes] = []

        def lose_first(node: str, delta: bytes) -> None:
            if not lost:
                lost.append(delta)  # as if pub/sub had dropped it on the way to b
                return
            apply_delta(node, delta)

        replicas._on_delta = lose_first  # type: ignore[method-assign]
        a.broker.key_added("/k2")
        await eventually(lambda: bool(lost))
        assert not routes(b.broker, "a", "/k2")
        a.broker.key_added("/k3")  # the next delta shows b a gap
        await eventually(lambda: routes(b.broker, "a", "/k2") and routes(b.broker, "a", "/k3"))
        assert b.broker.replicas.resyncs >= 1
        assert b.broker.replicas.snapshot_loads > loads
    finally:
        await a.broker.close()
        await b.broker.close()


async def test_crashed_node_leaves_routing_after_its_ttl_and_may_come_back(
    redis_url: str, prefix: str
) -> None:
    a = await Rec(make(redis_url, prefix, "a")).start()
    b = await Rec(make(redis_url, prefix, "b")).start()
    try:
        a.broker.key_added("/old")
        await eventually(lambda: routes(b.broker, "a", "/old"))
        await a.broker._stop_link()  # like SIGKILL: no LEAVE, the heartbeat key just stops
        t0 = time.monotonic()
        await asyncio.sleep(TTL_S / 2)
        assert b.broker.is_live("a")
        await eventually(lambda: not b.broker.is_live("a"), timeout_s=TTL_S + 3 * HEARTBEAT_S)
        assert time.monotonic() - t0 >= TTL_S / 2
        # The same id again: a new incarnation (new generation) replaces the old replica.
        a2 = await Rec(make(redis_url, prefix, "a")).start()
        a2.broker.key_added("/new")
        await eventually(lambda: routes(b.broker, "a", "/new"))
        assert not routes(b.broker, "a", "/old")
        b.broker.publish(expand("/new"), env("/new"))
        await eventually(lambda: a2.received == [env("/new")])
        await a2.broker.close()
    finally:
        await b.broker.close()


async def test_broadcast_mode_sends_every_publish_to_every_node(redis_url: str, prefix: str) -> None:
    a = await Rec(make(redis_url, prefix, "a")).start()
    b = await Rec(make(redis_url, prefix, "b", routing="broadcast")).start()
    c = await Rec(make(redis_url, prefix, "c")).start()
    try:
        a.broker.key_added("/only/a")
        await eventually(lambda: b.broker.is_live("a") and b.broker.is_live("c"))
        b.broker.publish(expand("/only/a"), env("/only/a"))
        await eventually(lambda: len(a.received) == 1 and len(c.received) == 1)
        assert b.broker.frames_sent == 2
    finally:
        for n in (a, b, c):
            await n.broker.close()


async def test_publisher_routes_encoded_messages_from_a_backend(redis_url: str, prefix: str) -> None:
    a = await Rec(make(redis_url, prefix, "a")).start()
    c = await Rec(make(redis_url, prefix, "c")).start()
    a.broker.key_added("/chat/*")
    c.broker.key_added("/feed/u1")
    pub = Publisher(redis_url, key_prefix=prefix, heartbeat_s=HEARTBEAT_S, ttl_s=TTL_S)
    try:
        await pub.start()
        await eventually(lambda: routes_p(pub, "a", "/chat/*") and routes_p(pub, "c", "/feed/u1"))
        await pub.publish("/chat/room", {"text": "hi"}, ext={"k": 1}, id="m1")
        await eventually(lambda: len(a.received) == 1)
        channel, _, body = a.received[0].partition(b"\n")
        assert channel == b"/chat/room"
        assert orjson.loads(body) == {
            "channel": "/chat/room",
            "data": {"text": "hi"},
            "id": "m1",
            "ext": {"k": 1},
        }
        frames = pub.frames_sent
        await pub.publish_many([(f"/feed/u{i}", i) for i in range(1000)])
        await eventually(lambda: len(c.received) >= 1)
        await settle("redis")
        assert pub.frames_sent - frames <= 2  # c, plus a only on a false positive
        channels = [e.partition(b"\n")[0] for e in c.received]
        assert b"/feed/u1" in channels and len(channels) <= 3
        assert orjson.loads(c.received[channels.index(b"/feed/u1")].partition(b"\n")[2])["data"] == 1
        assert len(a.received) <= 2
        with pytest.raises(ValueError):
            await pub.publish("/meta/handshake", {})
    finally:
        await pub.close()
        await a.broker.close()
        await c.broker.close()


def routes_p(pub: Publisher, holder: str, key: str) -> bool:
    replica = pub.replicas.table.get(holder)
    return replica is not None and replica.contains(key)


@pytest.mark.slow
async def test_redis_restart_nodes_reconnect_reannounce_and_resume(private_redis: RedisProcess) -> None:
    url, prefix = private_redis.url, "rtr:"
    a = await Rec(make(url, prefix, "a")).start()
    b = await Rec(make(url, prefix, "b")).start()
    try:
        a.broker.key_added("/x")
        await eventually(lambda: routes(b.broker, "a", "/x"))
        private_redis.stop()
        await eventually(lambda: not a.broker.connected and not b.broker.connected)
        b.broker.publish(expand("/x"), env("/x", "lost"))  # at most once: dropped and counted
        assert b.broker.dropped == 1
        a.broker.key_added("/y")  # changes made while Redis is down are announced on return
        private_redis.start()
        await eventually(lambda: a.broker.connected and b.broker.connected, timeout_s=6)
        await eventually(lambda: routes(b.broker, "a", "/x") and routes(b.broker, "a", "/y"))
        b.broker.publish(expand("/y"), env("/y", "back"))
        await eventually(lambda: a.received == [env("/y", "back")])
        assert a.broker.reconnects >= 1 and b.broker.reconnects >= 1
    finally:
        await a.broker.close()
        await b.broker.close()


async def test_start_without_redis_serves_alone_then_joins(private_redis: RedisProcess) -> None:
    private_redis.stop()
    a = make(private_redis.url, "rts:", "a", connect_wait_s=0.3)
    received: list[bytes] = []
    t0 = time.monotonic()
    await a.start(received.append)
    assert time.monotonic() - t0 < 2
    try:
        assert not a.connected and a.is_live("a") and not a.is_live("b")
        a.publish(expand("/x"), env("/x"))  # never raises
        private_redis.start()
        await eventually(lambda: a.connected, timeout_s=6)
    finally:
        await a.close()


@pytest.mark.parametrize("changes", [1, 5, 40, 3000])
async def test_snapshot_patch_equals_a_full_rewrite(redis_url: str, prefix: str, changes: int) -> None:
    import redis.asyncio as aioredis

    from realtime.broker.redis_wire import PATCH_SCRIPT, patch_snapshot
    from realtime.routing import CuckooFilter

    f = CuckooFilter.for_capacity(10_000)
    for i in range(2000):
        f.add(f"/k/{i}")
    f.take_delta()
    before = f.to_bytes()
    for i in range(changes):
        f.add(f"/new/{i}")
    f.remove("/k/7")
    delta = f.take_delta()
    assert delta is not None
    after = f.to_bytes()
    patch = patch_snapshot(after, delta)
    assert (patch is None) == (changes == 3000)  # a large change rewrites the whole snapshot
    if patch is None:
        return
    client = aioredis.Redis.from_url(redis_url)
    try:
        key = prefix + "patch"
        await client.set(key, before, px=5000)
        assert await client.eval(PATCH_SCRIPT, 1, key, *patch) == 1
        assert await client.get(key) == after
        assert 0 < await client.pttl(key) <= 5000  # the heartbeat TTL survives a patch
        assert CuckooFilter.from_bytes(after) == f
        assert await client.eval(PATCH_SCRIPT, 1, prefix + "missing", *patch) == 0
        assert await client.exists(prefix + "missing") == 0
    finally:
        await client.aclose()


async def test_replica_behind_its_snapshot_is_sent_everything_until_a_reload_catches_up(
    redis_url: str, prefix: str
) -> None:
    import redis.asyncio as aioredis

    from realtime.broker.redis_routing import Replicas
    from realtime.broker.redis_wire import DELTA, KeySpace, control
    from realtime.routing import CuckooFilter

    keys = KeySpace(prefix)
    owner = CuckooFilter.for_capacity(100)
    owner.add("/a")
    owner.take_delta()
    old_snapshot = owner.to_bytes()  # seq 1
    owner.add("/b")
    owner.take_delta()  # seq 2: this replica never sees it
    owner.add("/c")
    seq3 = owner.take_delta()
    assert seq3 is not None
    client = aioredis.Redis.from_url(redis_url)
    replicas = Replicas(keys, "me")
    try:
        await client.set(keys.snapshot("o"), old_snapshot, px=5000)
        replicas.on_control(control(DELTA, "o", seq3))  # unknown node: load its snapshot
        await replicas.load_wanted(client)
        batch = [(["/zzz"], b"p1")]
        assert replicas.route(batch, "me", broadcast=False) == {"o": [b"p1"]}  # stale: everything
        await client.set(keys.snapshot("o"), owner.to_bytes(), px=5000)  # the owner catches up
        await asyncio.wait_for(replicas.wake.wait(), 1.0)  # the retry timer
        await replicas.load_wanted(client)
        assert replicas.route(batch, "me", broadcast=False) == {}
        assert all(replicas.table.get("o").contains(k) for k in ("/a", "/b", "/c"))  # type: ignore[union-attr]
    finally:
        await client.aclose()


async def test_may_route_follows_other_nodes_filters(redis_url: str, prefix: str) -> None:
    """What the feed bridge asks before it builds an update for a follower's channel."""
    a = await Rec(make(redis_url, prefix, "a")).start()
    b = await Rec(make(redis_url, prefix, "b")).start()
    try:
        watched, idle = expand("/site-1-feed-timeline2"), expand("/site-1-feed-timeline3")
        await eventually(lambda: "b" in a.broker.replicas.table.node_ids)
        assert not a.broker.may_route(watched) and not a.broker.may_route(idle)
        b.broker.key_added("/site-1-feed-timeline2")
        await eventually(lambda: a.broker.may_route(watched))
        assert not a.broker.may_route(idle)
        assert not b.broker.may_route(watched)  # its own keys are not another node's
        b.broker.key_removed("/site-1-feed-timeline2")
        await eventually(lambda: not a.broker.may_route(watched))
    finally:
        await a.broker.close()
        await b.broker.close()
    assert not a.broker.may_route(watched)  # closed: publish would drop it too
