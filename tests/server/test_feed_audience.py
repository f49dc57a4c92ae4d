"""Pushes to followers build a live update only for feeds someone may be subscribed to, on this
node or on another (an offline follower costs no message); subscribers still get theirs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jwt
from helpers.inprocess_node import Node, connect, make_node, subscribe

from feeds.apps import App
from feeds.service import FeedService
from feeds.store.base import Follow
from feeds.store.sqlite import SqliteStore
from realtime.broker.memory import MemoryHub
from realtime.feeds_bridge import BayeuxNotifier

SECRET = "audience-secret-" * 3
APP = App("9", "key9", SECRET)


async def watch(node: Node, together: str) -> str:
    reply = await node.send(
        {"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"]}
    )
    cid: str = reply[0]["clientId"]
    signature = jwt.encode({"resource": "feed", "action": "read", "feed_id": together}, SECRET, "HS256")
    ext: dict[str, Any] = {"user_id": "1", "api_key": APP.api_key, "signature": signature}
    ok = await node.send(subscribe(cid, f"/site-9-feed-{together}", ext=ext))
    assert ok[0]["successful"], ok
    return cid


async def test_only_watched_followers_get_an_update_and_they_receive_it(tmp_path: Path) -> None:
    node = make_node(apps=[APP])
    await node.broker.start(node.engine.deliver_remote)
    svc = FeedService(SqliteStore(str(tmp_path / "f.db")), [APP], notifier=BayeuxNotifier(node.server))
    await svc.start()
    try:
        followers = [svc.feed(APP, "timeline", str(i)) for i in range(2, 12)]
        await svc.store.follow([Follow(f.key, svc.feed(APP, "user", "1").key, 1) for f in followers])
        for f in followers:
            await svc.fanout.mark_active(f.key)
        cid = await watch(node, "timeline2")
        before = node.server.stats.publishes
        await svc.add_activities(
            APP, svc.feed(APP, "user", "1"), [{"actor": "1", "verb": "post", "object": "o"}]
        )
        assert node.server.stats.publishes - before == 2  # user:1 itself and the one watched follower
        got = await node.send(connect(cid))
        updates = [m["data"] for m in got if m.get("channel") == "/site-9-feed-timeline2"]
        assert len(updates) == 1 and updates[0]["feed"] == "timeline:2"
        assert updates[0]["new"][0]["origin"] == "user:1"
    finally:
        await svc.close()


async def test_a_subscriber_on_another_node_makes_a_feed_watched() -> None:
    hub = MemoryHub()
    a, b = make_node(hub, "a", apps=[APP]), make_node(hub, "b", apps=[APP])
    for n in (a, b):
        await n.broker.start(n.engine.deliver_remote)
    notifier = BayeuxNotifier(a.server)
    keys = ["9/timeline:2", "9/timeline:3"]
    assert notifier.watched(keys) == []
    await watch(b, "timeline3")
    assert notifier.watched(keys) == ["9/timeline:3"]
    await watch(a, "timeline2")
    assert notifier.watched(keys) == keys


async def test_the_single_segment_shortcut_agrees_with_each_channels_routing_keys() -> None:
    """may_deliver_many skips building routing keys for single-segment channels while no `/*` or
    `/**` key (plain or privileged) may be held; it must answer as the per-channel keys would."""
    hub = MemoryHub()
    a, b = make_node(hub, "a", apps=[APP]), make_node(hub, "b", apps=[APP])
    for n in (a, b):
        await n.broker.start(n.engine.deliver_remote)
    channels = ["/site-9-feed-timeline2", "/site-9-feed-timeline3", "/chat", "/rooms/1", "/rooms/2"]

    def each() -> list[bool]:
        return [a.engine._may_reach([a.engine.routing_keys(c)])[0] for c in channels]

    def check(expected: list[bool]) -> None:
        assert a.engine.may_deliver_many(channels) == expected == each()

    check([False] * 5)
    session = b.engine.create_session()
    assert session is not None
    b.engine.subscribe(session, "/site-9-feed-timeline3")
    check([False, True, False, False, False])
    here = a.engine.create_session()
    assert here is not None
    a.engine.subscribe(here, "/rooms/*")
    check([False, True, False, True, True])
    a.engine.subscribe(here, "/*")  # a plain wildcard: not for protected (feed) channels
    check([False, True, True, True, True])
    b.engine.subscribe(session, "/**", ["!/**"])  # privileged, on another node: everything
    check([True] * 5)
