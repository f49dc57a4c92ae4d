from __future__ import annotations

from typing import Any

from helpers.inprocess_node import Node, connect, make_node, subscribe

from realtime.bayeux.messages import Message


async def test_handshake_reply_shape(node: Node) -> None:
    reply = await node.send(
        {
            "channel": "/meta/handshake",
            "version": "1.0",
            "id": "h",
            "supportedConnectionTypes": ["websocket", "long-polling"],
            "ext": {"secret": 1},
        }
    )
    r = reply[0]
    assert set(r) == {
        "id",
        "channel",
        "successful",
        "version",
        "supportedConnectionTypes",
        "clientId",
        "advice",
    }
    assert r["advice"] == {"reconnect": "retry", "interval": 0, "timeout": 1000}
    assert ("handshake", r["clientId"]) in node.events


async def test_failed_handshake(node: Node) -> None:
    reply = await node.send({"channel": "/meta/handshake", "supportedConnectionTypes": ["carrier-pigeon"]})
    assert reply == [
        {
            "channel": "/meta/handshake",
            "successful": False,
            "error": "301:carrier-pigeon:Connection types not supported",
            "version": "1.0",
            "supportedConnectionTypes": list(node.server.types),
            "advice": {"reconnect": "handshake"},
        }
    ]


async def test_subscribe_errors_echo_and_change_nothing(node: Node) -> None:
    cid = await node.handshake()
    reply = await node.send(subscribe(cid, ["/ok", "/service/x"]))
    assert reply[0] == {
        "clientId": cid,
        "channel": "/meta/subscribe",
        "successful": False,
        "error": "403:/service/x:Forbidden channel",
        "subscription": ["/ok", "/service/x"],
    }
    assert not node.engine.index.holders
    reply = await node.send(subscribe(cid, "/a/*/b"))
    assert reply[0]["error"] == "405:/a/*/b:Invalid channel"
    reply = await node.send({"channel": "/meta/subscribe", "clientId": cid})
    assert (
        reply[0]["error"] == "402:subscription:Missing required parameter" and reply[0]["subscription"] == []
    )


async def test_subscribe_twice_and_unsubscribe_unknown_are_fine(node: Node) -> None:
    cid = await node.handshake()
    for _ in range(2):
        assert (await node.send(subscribe(cid, "/a")))[0]["successful"]
    assert node.events.count(("subscribe", cid, "/a")) == 1
    reply = await node.send({"channel": "/meta/unsubscribe", "clientId": cid, "subscription": "/never"})
    assert reply[0]["successful"]


async def test_subscription_limit() -> None:
    node = make_node(max_subscriptions_per_client=2)
    cid = await node.handshake()
    assert (await node.send(subscribe(cid, ["/a", "/b"])))[0]["successful"]
    reply = await node.send(subscribe(cid, "/c"))
    assert reply[0]["error"].startswith("429:") and node.stats.limits == {"subscriptions_per_client": 1}


async def test_session_limit() -> None:
    node = make_node(max_sessions=1)
    await node.handshake()
    reply = await node.send(
        {"channel": "/meta/handshake", "version": "1", "supportedConnectionTypes": ["websocket"]}
    )
    assert reply[0]["error"].startswith("429:") and "clientId" not in reply[0]


async def test_publish_errors(node: Node) -> None:
    assert (await node.send({"channel": "/a/*", "data": 1}))[0]["error"] == "405:/a/*:Invalid channel"
    assert (await node.send({"channel": "/a"}))[0]["error"] == "402:data:Missing required parameter"
    assert (await node.send({"channel": "/meta/foo", "data": 1}))[0][
        "error"
    ] == "403:/meta/foo:Forbidden channel"
    assert (await node.send({"data": 1}))[0]["error"] == "405::Invalid channel"
    for falsy in (None, False, 0, ""):
        assert (await node.send({"channel": "/a", "data": falsy}))[0]["successful"]


async def test_unencodable_data_is_refused_not_crashed(node: Node) -> None:
    reply = await node.send({"channel": "/a", "data": 2**70})
    assert reply[0]["error"].startswith("400:")


async def test_service_channels_route_and_only_in_process_may_subscribe(node: Node) -> None:
    cid = await node.handshake()
    await node.send(subscribe(cid, "/**"))
    await node.send({"channel": "/service/x", "data": 1})
    reply = await node.send(connect(cid, advice={"timeout": 0}))
    assert reply[1]["channel"] == "/service/x", "a /** subscriber sees /service messages, as in Faye"


async def test_extensions(node: Node) -> None:
    seen: list[str] = []

    class Auth:
        def incoming(self, message: Message, ctx: Any) -> Message | None:
            if message.get("channel") == "/drop":
                return None
            if (
                message.get("channel") == "/meta/subscribe"
                and message.get("ext", {}).get("passphrase") != "t"
            ):
                message["error"] = "403::Authentication required"
            return message

    class Stamp:
        async def outgoing(self, message: Message, ctx: Any) -> Message:
            seen.append(message["channel"])
            message.setdefault("ext", {})["stamped"] = True
            return message

    node.server.add_extension(Auth())
    node.server.add_extension(Stamp())
    cid = await node.handshake()
    refused = await node.send(subscribe(cid, "/a"))
    assert refused[0]["error"] == "403::Authentication required" and not refused[0]["successful"]
    assert (await node.send(subscribe(cid, "/a", ext={"passphrase": "t"})))[0]["successful"]
    assert await node.send({"channel": "/drop", "data": 1}) == []
    await node.send({"channel": "/a", "data": 1})
    reply = await node.send(connect(cid, advice={"timeout": 0}))
    assert reply[1] == {"channel": "/a", "data": 1, "ext": {"stamped": True}}
    assert seen.count("/a") == 2, "once for the publish ack, once for the delivery (not per recipient)"


async def test_in_process_client(node: Node) -> None:
    from realtime.inprocess import InProcessClient

    client = InProcessClient(node.server)
    got: list[Any] = []
    await client.subscribe("/service/jobs", got.append)
    cid = await node.handshake()
    await node.send({"channel": "/service/jobs", "data": {"n": 1}, "clientId": cid})
    await client.publish("/service/jobs", {"n": 2})
    import asyncio

    await asyncio.sleep(0.01)
    assert got == [{"n": 1}, {"n": 2}]
    node.clock.now += 1e6
    node.engine.sweep()
    assert client.client_id in node.engine.sessions, "in-process sessions never expire"
