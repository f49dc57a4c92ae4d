"""Two nodes on one MemoryHub: the reference for what any broker must do."""

from __future__ import annotations

import asyncio

from helpers.inprocess_node import connect, make_node, subscribe

from realtime.broker.memory import MemoryHub


async def test_two_nodes_delivered_exactly_once_and_only_where_needed() -> None:
    hub = MemoryHub()
    a, b, c = (make_node(hub, name) for name in ("a", "b", "c"))
    for n in (a, b, c):
        await n.broker.start(n.engine.deliver_remote)
    on_a, on_b = await a.handshake(), await b.handshake()
    await a.send(subscribe(on_a, "/room/*"))
    await b.send(subscribe(on_b, ["/room/1", "/room/**"]))
    await c.send({"channel": "/room/1", "data": "hi"})
    await asyncio.sleep(0.01)
    got_a = await a.send(connect(on_a, advice={"timeout": 0}))
    got_b = await b.send(connect(on_b, advice={"timeout": 0}))
    assert [m["data"] for m in got_a[1:]] == ["hi"] and [m["data"] for m in got_b[1:]] == ["hi"]
    assert hub.sent == 2, "c sends to a and b once each, never to itself"
    await c.send({"channel": "/elsewhere", "data": 1})
    assert hub.sent == 2, "no node holds /elsewhere: nothing on the wire"
    await b.send({"channel": "/meta/unsubscribe", "clientId": on_b, "subscription": ["/room/1", "/room/**"]})
    await c.send({"channel": "/room/1", "data": "again"})
    assert hub.sent == 3
    await a.broker.close()
    await c.send({"channel": "/room/1", "data": "gone"})
    assert hub.sent == 3, "a closed broker is out of routing"
