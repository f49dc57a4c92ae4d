from __future__ import annotations

import asyncio

from helpers.inprocess_node import Node, connect, subscribe


async def test_round_trip_over_a_held_connect(node: Node) -> None:
    cid = await node.handshake()
    reply = await node.send(subscribe(cid, "/chat/*", id="s1"))
    assert reply == [
        {
            "id": "s1",
            "clientId": cid,
            "channel": "/meta/subscribe",
            "successful": True,
            "subscription": "/chat/*",
        }
    ]
    held = asyncio.ensure_future(node.send(connect(cid, id="c2")))
    await asyncio.sleep(0.05)
    assert not held.done(), "an idle connect must be held"
    ack = await node.send(
        {
            "channel": "/chat/room",
            "data": {"t": 1},
            "id": "p1",
            "clientId": "other",
            "ext": {"k": 1},
            "successful": True,
            "advice": {},
        }
    )
    assert ack == [{"id": "p1", "clientId": "other", "channel": "/chat/room", "successful": True}]
    messages = await asyncio.wait_for(held, 1)
    assert messages[0]["id"] == "c2" and messages[0]["successful"]
    assert messages[0]["advice"] == {"reconnect": "retry", "interval": 0, "timeout": 1000}
    # Forwarded: channel, data, id, ext; never the publisher's clientId or a successful flag.
    assert messages[1:] == [{"channel": "/chat/room", "data": {"t": 1}, "id": "p1", "ext": {"k": 1}}]


async def test_first_connect_is_answered_at_once_and_later_ones_are_held(node: Node) -> None:
    reply = await node.send(
        {"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["websocket"]}
    )
    cid = reply[0]["clientId"]
    node_part, _, random_part = cid.rpartition("-")
    assert node_part == "n1" and len(random_part) == 31 and random_part.isalnum()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await node.send(connect(cid))
    assert loop.time() - t0 < 0.2
    t0 = loop.time()
    await node.send(connect(cid, advice={"timeout": 300}))
    assert 0.25 < loop.time() - t0 < 0.9, "client advice.timeout is honoured"


async def test_advice_timeout_zero_returns_at_once_and_large_values_are_clamped(node: Node) -> None:
    cid = await node.handshake()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await node.send(connect(cid, advice={"timeout": 0}))
    assert loop.time() - t0 < 0.2
    t0 = loop.time()
    await node.send(connect(cid, advice={"timeout": 600000}), wait_s=3)
    assert loop.time() - t0 < 1.5, "clamped to the server timeout (1 s)"


async def test_messages_published_in_one_tick_come_in_one_reply(node: Node) -> None:
    cid = await node.handshake()
    await node.send(subscribe(cid, "/a"))
    held = asyncio.ensure_future(node.send(connect(cid)))
    await asyncio.sleep(0.02)
    await node.send({"channel": "/a", "data": 1}, {"channel": "/a", "data": 2})
    reply = await asyncio.wait_for(held, 1)
    assert [m.get("data") for m in reply[1:]] == [1, 2]


async def test_one_copy_per_client_with_overlapping_subscriptions(node: Node) -> None:
    cid = await node.handshake()
    await node.send(subscribe(cid, ["/a/b", "/a/*", "/a/**", "/**"]))
    await node.send({"channel": "/a/b", "data": "x"})
    reply = await node.send(connect(cid, advice={"timeout": 0}))
    assert [m.get("data") for m in reply[1:]] == ["x"]


async def test_superseded_connect_is_answered(node: Node) -> None:
    cid = await node.handshake()
    first = asyncio.ensure_future(node.send(connect(cid, id="old")))
    await asyncio.sleep(0.02)
    second = asyncio.ensure_future(node.send(connect(cid, id="new")))
    reply = await asyncio.wait_for(first, 0.5)
    assert reply[0]["id"] == "old" and reply[0]["successful"]
    assert not second.done()
    await asyncio.wait_for(second, 2)


async def test_disconnect_answers_the_held_connect_and_forgets_the_client(node: Node) -> None:
    cid = await node.handshake()
    await node.send(subscribe(cid, "/a"))
    held = asyncio.ensure_future(node.send(connect(cid)))
    await asyncio.sleep(0.02)
    reply = await node.send({"channel": "/meta/disconnect", "clientId": cid, "id": "d"})
    assert reply == [{"id": "d", "clientId": cid, "channel": "/meta/disconnect", "successful": True}]
    await asyncio.wait_for(held, 0.5)
    again = await node.send(connect(cid))
    assert again == [
        {
            "channel": "/meta/connect",
            "successful": False,
            "error": f"401:{cid}:Unknown client",
            "advice": {"reconnect": "handshake"},
        }
    ]
    assert ("unsubscribe", cid, "/a") in node.events and ("disconnect", cid) in node.events
    assert node.engine.index.count == 0


async def test_sessions_expire_after_the_session_timeout(node: Node) -> None:
    cid = await node.handshake()
    await node.send(subscribe(cid, "/a"))
    node.clock.now += 1.9  # session timeout is 2 x 1 s
    assert node.engine.sweep() == 0
    node.clock.now += 0.2
    assert node.engine.sweep() == 1
    assert node.stats.sessions_expired == 1 and not node.engine.index.holders
    reply = await node.send(subscribe(cid, "/b"))
    assert reply[0]["error"] == f"401:{cid}:Unknown client" and reply[0]["clientId"] == cid


async def test_a_connect_keeps_the_session_alive(node: Node) -> None:
    cid = await node.handshake()
    for _ in range(5):
        node.clock.now += 1.5
        await node.send(connect(cid, advice={"timeout": 0}))
        node.engine.sweep()
    assert cid in node.engine.sessions


async def test_queue_overflow_ends_the_session_and_is_counted() -> None:
    from helpers.inprocess_node import make_node

    node = make_node(max_queue_messages=3)
    await node.broker.start(node.engine.deliver_remote)
    cid = await node.handshake()
    await node.send(subscribe(cid, "/a"))
    for i in range(4):
        await node.send({"channel": "/a", "data": i})
    assert node.stats.queue_overflows == 1 and cid not in node.engine.sessions
    reply = await node.send(connect(cid))
    assert reply[0]["advice"] == {"reconnect": "handshake"}


async def test_server_shutdown_answers_held_connects_with_advice(node: Node) -> None:
    cid = await node.handshake()
    held = asyncio.ensure_future(node.send(connect(cid)))
    await asyncio.sleep(0.02)
    node.server.begin_shutdown()
    reply = await asyncio.wait_for(held, 0.5)
    assert reply[0]["advice"]["reconnect"] == "handshake"
    refused = await node.send(
        {"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"]}
    )
    assert not refused[0]["successful"]


async def test_binding_a_closing_socket_keeps_the_backlog(node: Node) -> None:
    from realtime.bayeux.outbound import Outbound
    from realtime.bayeux.session import Outcome
    from realtime.server import Context

    class ClosingSink:
        def deliver(self, out: Outbound) -> Outcome:
            return Outcome.QUEUE

        def close(self, reason: str) -> None:
            pass

    cid = await node.handshake()
    await node.send(subscribe(cid, "/b"))
    for i in range(3):
        await node.send({"channel": "/b", "data": i})
    session = node.engine.sessions[cid]
    node.server.bind(session, Context("websocket", sink=ClosingSink()))
    session.sink = None
    reply = await node.send(connect(cid, advice={"timeout": 0}))
    assert [m.get("data") for m in reply[1:]] == [0, 1, 2]
