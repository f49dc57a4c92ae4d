"""Exact replies to the meta channels and to publishing, over raw HTTP (bayeux-spec.md §3-§6)."""

from __future__ import annotations

import re

import pytest

from .bayeux_wire import DELIVERY_KEYS, Wire, fresh_channel

FAILED_HANDSHAKE = {"reconnect": "handshake"}


async def test_handshake_reply(wire: Wire) -> None:
    request = {
        "channel": "/meta/handshake",
        "version": "1.0",
        "id": "x1",
        "ext": {"trace": "t"},
        "supportedConnectionTypes": ["long-polling", "websocket"],
    }
    [reply] = await wire.post([request])
    assert set(reply) == {
        "id",
        "channel",
        "successful",
        "version",
        "supportedConnectionTypes",
        "clientId",
        "advice",
    }
    assert reply["id"] == "x1" and reply["channel"] == "/meta/handshake"
    assert reply["successful"] is True and reply["version"] == "1.0"
    assert {"long-polling", "callback-polling", "websocket"} <= set(reply["supportedConnectionTypes"])
    assert reply["advice"] == {"reconnect": "retry", "interval": 0, "timeout": int(wire.timeout_s * 1000)}
    # Opaque to clients but URL-safe (EventSource puts it in a path) and hard to guess.
    assert re.fullmatch(r"[A-Za-z0-9_~.-]{20,}", reply["clientId"]), reply["clientId"]
    [again] = await wire.post([request])
    assert again["clientId"] != reply["clientId"]


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"supportedConnectionTypes": ["long-polling"]}, "402:version:Missing required parameter"),
        ({"version": "1.0"}, "402:supportedConnectionTypes:Missing required parameter"),
        ({}, "402:supportedConnectionTypes:Missing required parameter"),
        (
            {"version": "1.0", "supportedConnectionTypes": ["foo", "bar"]},
            "301:foo,bar:Connection types not supported",
        ),
    ],
)
async def test_handshake_errors(wire: Wire, fields: dict[str, object], error: str) -> None:
    [reply] = await wire.post([{"channel": "/meta/handshake", "id": "h", **fields}])
    assert reply["successful"] is False
    assert reply["error"] == error
    assert reply["advice"] == FAILED_HANDSHAKE
    assert "clientId" not in reply
    assert reply["version"] == "1.0" and "long-polling" in reply["supportedConnectionTypes"]


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"clientId": "nosuchclient", "connectionType": "long-polling"}, "401:nosuchclient:Unknown client"),
        ({"connectionType": "long-polling"}, "402:clientId:Missing required parameter"),
        ({"clientId": "nosuchclient"}, "402:connectionType:Missing required parameter"),
        (
            {"clientId": "nosuchclient", "connectionType": "carrier-pigeon"},
            "301:carrier-pigeon:Connection types not supported",
        ),
        (
            {"clientId": "LIVE", "connectionType": "carrier-pigeon"},
            "301:carrier-pigeon:Connection types not supported",
        ),
        ({"clientId": "LIVE"}, "402:connectionType:Missing required parameter"),
    ],
)
async def test_connect_validation_last_check_wins(wire: Wire, fields: dict[str, str], error: str) -> None:
    if fields.get("clientId") == "LIVE":
        fields = {**fields, "clientId": await wire.handshake()}
    [reply] = await wire.post([{"channel": "/meta/connect", "id": "c", **fields}])
    assert reply == {
        "id": "c",
        "channel": "/meta/connect",
        "successful": False,
        "error": error,
        "advice": FAILED_HANDSHAKE,
    }


async def test_first_connect_is_answered_at_once(wire: Wire) -> None:
    client_id = await wire.handshake()
    elapsed, replies = await wire.timed_connect(client_id)
    assert elapsed < 1.0
    [reply] = replies
    assert set(reply) == {"id", "clientId", "channel", "successful", "advice"}
    assert reply["clientId"] == client_id and reply["successful"] is True
    assert reply["advice"] == {"reconnect": "retry", "interval": 0, "timeout": int(wire.timeout_s * 1000)}


async def test_idle_connect_is_held_for_the_server_timeout(wire: Wire) -> None:
    client_id = await wire.session()
    elapsed, replies = await wire.timed_connect(client_id)
    assert wire.timeout_s - 0.3 <= elapsed <= wire.timeout_s + 1.5
    assert [r["channel"] for r in replies] == ["/meta/connect"] and replies[0]["successful"] is True


@pytest.mark.parametrize(("advice_ms", "low", "high"), [(0, 0.0, 0.5), (1000, 0.8, 1.8)])
async def test_client_advice_timeout_is_honoured(wire: Wire, advice_ms: int, low: float, high: float) -> None:
    client_id = await wire.session()
    elapsed, replies = await wire.timed_connect(client_id, advice_ms)
    assert low <= elapsed <= high
    assert replies[0]["successful"] is True


async def test_client_advice_timeout_is_clamped_to_the_server_timeout(wire: Wire) -> None:
    client_id = await wire.session()
    elapsed, replies = await wire.timed_connect(client_id, 600_000)
    assert elapsed <= wire.timeout_s + 1.5
    assert replies[0]["successful"] is True


async def test_subscribe_and_unsubscribe_echo(wire: Wire) -> None:
    client_id = await wire.session()
    one, many = fresh_channel(), [fresh_channel(), fresh_channel() + "/*", fresh_channel() + "/**"]
    for channel in ("/meta/subscribe", "/meta/unsubscribe"):
        for subscription in (one, many):
            reply = await wire.subscribe(client_id, subscription, channel=channel)
            assert set(reply) == {"id", "clientId", "channel", "successful", "subscription"}
            assert reply["channel"] == channel and reply["clientId"] == client_id
            assert reply["successful"] is True and reply["subscription"] == subscription
    # Idempotent both ways: a second unsubscribe of the same channel is still accepted.
    assert (await wire.subscribe(client_id, one, channel="/meta/unsubscribe"))["successful"] is True


@pytest.mark.parametrize(
    ("subscription", "error"),
    [
        ("/meta/foo", "403:/meta/foo:Forbidden channel"),
        ("/meta/**", "403:/meta/**:Forbidden channel"),
        ("/service/x", "403:/service/x:Forbidden channel"),
        ("/service/**", "403:/service/**:Forbidden channel"),
        ("/foo/*/bar", "405:/foo/*/bar:Invalid channel"),
        ("foo", "405:foo:Invalid channel"),
        ("/foo//bar", "405:/foo//bar:Invalid channel"),
        ("/a.b", "405:/a.b:Invalid channel"),
        ("/**/foo", "405:/**/foo:Invalid channel"),
        ("/caf\u00e9", "405:/caf\u00e9:Invalid channel"),
    ],
)
async def test_subscribe_refusals(wire: Wire, subscription: str, error: str) -> None:
    client_id = await wire.session()
    for channel in ("/meta/subscribe", "/meta/unsubscribe"):
        reply = await wire.subscribe(client_id, subscription, channel=channel)
        assert reply["successful"] is False and reply["error"] == error
        assert reply["clientId"] == client_id and reply["subscription"] == subscription
        assert "advice" not in reply


async def test_subscribe_missing_fields_and_unknown_client(wire: Wire) -> None:
    client_id = await wire.session()
    [missing] = await wire.post([{"channel": "/meta/subscribe", "clientId": client_id, "id": "s"}])
    assert missing == {
        "id": "s",
        "clientId": client_id,
        "channel": "/meta/subscribe",
        "successful": False,
        "error": "402:subscription:Missing required parameter",
        "subscription": [],
    }
    unknown = await wire.subscribe("nosuchclient", "/foo")
    assert unknown["error"] == "401:nosuchclient:Unknown client" and unknown["clientId"] == "nosuchclient"


@pytest.mark.parametrize("channel", ["/meta/foo", "/meta/subscribe/x", "/meta/connect/x", "/meta/*"])
async def test_unknown_meta_channels_are_forbidden(wire: Wire, channel: str) -> None:
    client_id = await wire.session()
    [reply] = await wire.post(
        [{"channel": channel, "clientId": client_id, "id": "q", "subscription": "/x", "data": 1}]
    )
    # Exact names only: a prefix match of a real meta channel must not be processed as it.
    assert reply == {
        "id": "q",
        "clientId": client_id,
        "channel": channel,
        "successful": False,
        "error": f"403:{channel}:Forbidden channel",
    }


async def test_publish_ack_and_errors(wire: Wire) -> None:
    channel = fresh_channel()
    assert await wire.publish(channel, {"a": 1}, id="p1") == {
        "id": "p1",
        "channel": channel,
        "successful": True,
    }
    client_id = await wire.session()
    ack = await wire.publish(channel, 1, clientId=client_id, id="p2")
    assert ack == {"id": "p2", "clientId": client_id, "channel": channel, "successful": True}
    for bad in (channel + "/*", channel + "/**", "/foo bar", "/a.b"):
        reply = await wire.publish(bad, 1)
        assert reply["successful"] is False and reply["error"] == f"405:{bad}:Invalid channel"
    [missing] = await wire.post([{"channel": channel, "id": "p"}])
    assert missing == {
        "id": "p",
        "channel": channel,
        "successful": False,
        "error": "402:data:Missing required parameter",
    }


async def test_publish_without_client_id_reaches_subscribers_with_ext_and_nothing_else(wire: Wire) -> None:
    channel = fresh_channel()
    subscriber = await wire.session(channel)
    publisher = await wire.session()
    await wire.publish(channel, {"n": 1}, ext={"k": "v"})
    await wire.publish(channel, {"n": 2}, clientId=publisher, extra_field="dropped")
    got = await wire.drain(subscriber, 2)
    assert [m["data"] for m in got] == [{"n": 1}, {"n": 2}]
    assert got[0]["ext"] == {"k": "v"} and got[0]["channel"] == channel
    for message in got:
        assert set(message) <= DELIVERY_KEYS, message
        assert "id" in message


async def test_wildcards_deliver_one_copy_per_client(wire: Wire) -> None:
    base = fresh_channel()
    overlapping = await wire.session(base + "/*", base + "/**", base + "/x")
    deep_only = await wire.session(base + "/**")
    await wire.publish(base + "/x", "shallow")
    await wire.publish(base + "/x/y/z", "deep")
    await wire.publish(base, "parent")  # matches none of the patterns
    await wire.publish(base + "/end", "fence")
    for client_id in (overlapping, deep_only):
        got = await wire.drain(client_id, 3)
        assert [m["data"] for m in got] == ["shallow", "deep", "fence"]
        assert [m["channel"] for m in got] == [base + "/x", base + "/x/y/z", base + "/end"]


async def test_queued_messages_arrive_in_order_on_the_next_connect(wire: Wire) -> None:
    channel = fresh_channel()
    client_id = await wire.session(channel)
    for n in range(3):
        await wire.publish(channel, n)
    elapsed, replies = await wire.timed_connect(client_id)
    assert elapsed < 1.0
    assert replies[0]["channel"] == "/meta/connect" and replies[0]["successful"] is True
    assert [m["data"] for m in replies[1:]] == [0, 1, 2]


async def test_disconnect_reply_and_session_end(wire: Wire) -> None:
    client_id = await wire.session()
    [reply] = await wire.post([{"channel": "/meta/disconnect", "clientId": client_id, "id": "d"}])
    assert reply == {"id": "d", "clientId": client_id, "channel": "/meta/disconnect", "successful": True}
    [after] = await wire.connect(client_id, 0)
    assert after["error"] == f"401:{client_id}:Unknown client"
    [missing] = await wire.post([{"channel": "/meta/disconnect", "id": "d2"}])
    assert missing["successful"] is False and missing["error"] == "402:clientId:Missing required parameter"
