"""Replica bookkeeping without Redis: routing answers follow every replica change."""

from __future__ import annotations

from realtime.bayeux.channels import expand
from realtime.broker.redis_routing import Replicas
from realtime.broker.redis_wire import DELTA, JOIN, LEAVE, KeySpace, control
from realtime.routing import CuckooFilter


def setup() -> tuple[Replicas, CuckooFilter]:
    replicas = Replicas(KeySpace("t:"), "me")
    owner = CuckooFilter.for_capacity(1000)
    owner.add("/a")
    owner.take_delta()
    replicas.table.set_node("o", CuckooFilter.from_bytes(owner.to_bytes()))
    return replicas, owner


def pub(channel: str) -> tuple[list[str], bytes]:
    return expand(channel), channel.encode()


def test_cached_routes_follow_deltas_and_departures() -> None:
    replicas, owner = setup()
    batch = [pub("/a"), pub("/b/c"), pub("/a")]
    assert replicas.route(batch, "me", False) == {"o": [b"/a", b"/a"]}
    assert replicas.route(batch, "me", False) == {"o": [b"/a", b"/a"]}  # now from the cache
    owner.add("/b/*")
    replicas.on_control(control(DELTA, "o", owner.take_delta() or b""))
    assert replicas.route(batch, "me", False) == {"o": [b"/a", b"/b/c", b"/a"]}
    owner.remove("/a")
    replicas.on_control(control(DELTA, "o", owner.take_delta() or b""))
    assert replicas.route(batch, "me", False) == {"o": [b"/b/c"]}
    replicas.on_control(control(LEAVE, "o"))
    assert replicas.route(batch, "me", False) == {}


def test_gap_or_join_makes_a_node_receive_everything_until_reloaded() -> None:
    replicas, owner = setup()
    batch = [pub("/zz")]
    assert replicas.route(batch, "me", False) == {}
    owner.add("/x")
    owner.take_delta()  # lost
    owner.add("/zz")
    replicas.on_control(control(DELTA, "o", owner.take_delta() or b""))
    assert replicas.resyncs == 1
    assert replicas.route(batch, "me", False) == {"o": [b"/zz"]}  # stale: sent everything
    replicas2, _ = setup()
    replicas2.on_control(control(JOIN, "o"))
    assert replicas2.route([pub("/zz")], "me", False) == {"o": [b"/zz"]}


def test_own_messages_and_broadcast() -> None:
    replicas, _ = setup()
    replicas.on_control(control(JOIN, "me"))  # its own announcements are ignored
    assert replicas.table.node_ids == ["o"]
    assert replicas.route([pub("/none")], "me", True) == {"o": [b"/none"]}
    assert replicas.route([pub("/a")], "o", False) == {}  # never back to the excluded node


def test_may_route_answers_as_route_would() -> None:
    replicas, owner = setup()
    for channel, expected in (("/a", True), ("/b/c", False)):
        keys, payload = pub(channel)
        assert replicas.may_route(keys, "me", False) is expected
        assert bool(replicas.route([(keys, payload)], "me", False)) is expected
    assert replicas.may_route(expand("/b/c"), "me", True)  # broadcast: every live node
    assert not replicas.may_route(expand("/a"), "o", False)  # never the excluded node
    owner.add("/x")
    owner.take_delta()  # lost: the replica is stale and gets everything until reloaded
    owner.add("/y")
    replicas.on_control(control(DELTA, "o", owner.take_delta() or b""))
    assert replicas.may_route(expand("/b/c"), "me", False)
    replicas.on_control(control(LEAVE, "o"))
    assert not replicas.may_route(expand("/a"), "me", False)
