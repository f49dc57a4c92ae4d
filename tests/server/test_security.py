"""Authentication, channel policy and limits through BayeuxServer.process."""

from __future__ import annotations

from typing import Any

import jwt
from helpers.inprocess_node import Node, connect, make_node, subscribe

from feeds.apps import App

SECRET = "s" * 40
APP = App("9", "key9", SECRET)
RULES = [
    {"pattern": "/users/{user}/**", "subscribe": "owner", "publish": "server"},
    {"pattern": "/announce/**", "subscribe": "anyone", "publish": "server"},
]


def token(**claims: Any) -> str:
    return jwt.encode(claims, SECRET, algorithm="HS256")


def secured(**overrides: Any) -> Node:
    return make_node(apps=[APP], extra={"channels": RULES}, **overrides)


async def handshake(node: Node, ext: dict[str, Any] | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": ["long-polling"],
    }
    if ext is not None:
        msg["ext"] = ext
    reply: dict[str, Any] = (await node.send(msg))[0]
    if reply["successful"]:
        await node.send(connect(reply["clientId"]))
    return reply


async def drain(node: Node, cid: str) -> list[Any]:
    return [m for m in await node.send(connect(cid, advice={"timeout": 0})) if "successful" not in m]


async def test_a_token_binds_the_user_and_a_bad_one_is_refused() -> None:
    node = secured()
    ok = await handshake(node, {"token": token(user_id="42"), "api_key": "key9"})
    session = node.engine.sessions[ok["clientId"]]
    assert session.user_id == "42" and session in node.engine.index.holders["user:42"]
    forged = await handshake(node, {"token": jwt.encode({"user_id": "42"}, "x" * 40, algorithm="HS256")})
    assert forged["error"] == "403::Invalid token: invalid token" and "clientId" not in forged
    assert node.stats.limits["auth"] == 1


async def test_require_auth_refuses_anonymous_handshakes() -> None:
    node = secured(require_auth=True)
    assert (await handshake(node))["error"] == "403::Authentication required"
    assert (await handshake(node, {"token": token(user_id="1")}))["successful"]


async def test_owner_channels_and_wildcards_never_leak() -> None:
    node = secured()
    u42 = (await handshake(node, {"token": token(user_id="42")}))["clientId"]
    u43 = (await handshake(node, {"token": token(user_id="43")}))["clientId"]
    anon = (await handshake(node))["clientId"]
    assert (await node.send(subscribe(u42, "/users/42/inbox")))[0]["successful"]
    refused = await node.send(subscribe(u43, "/users/42/inbox"))
    assert refused[0]["error"] == "403:/users/42/inbox:Forbidden channel"
    for cid, pattern in ((u42, "/users/42/**"), (u43, "/**"), (anon, "/**"), (anon, "/users/*")):
        assert (await node.send(subscribe(cid, pattern)))[0]["successful"]
    srv = {"token": token(resource="*", action="*", feed_id="*"), "api_key": "key9"}
    assert (await node.send({"channel": "/users/42/inbox", "data": "private", "ext": srv}))[0]["successful"]
    assert (await node.send({"channel": "/chat/x", "data": "public"}))[0]["successful"]
    assert [m["data"] for m in await drain(node, u42)] == ["private"], (
        "once, though /inbox and /** both match"
    )
    assert [m["data"] for m in await drain(node, u43)] == ["public"]
    assert [m["data"] for m in await drain(node, anon)] == ["public"]


async def test_server_only_publishing_and_credentials_are_stripped() -> None:
    node = secured()
    cid = (await handshake(node))["clientId"]
    await node.send(subscribe(cid, "/announce/**"))
    refused = await node.send({"channel": "/announce/x", "data": 1})
    assert refused[0]["error"] == "403:/announce/x:Forbidden channel"
    ext = {"token": token(resource="*", action="*"), "api_key": "key9", "trace": "t1"}
    assert (await node.send({"channel": "/announce/x", "data": 2, "ext": ext}))[0]["successful"]
    assert await drain(node, cid) == [{"channel": "/announce/x", "data": 2, "ext": {"trace": "t1"}}]


async def test_stream_style_subscribe_ext_with_a_feed_token() -> None:
    node = make_node(apps=[APP])  # default rules: feed channels need a feed token
    cid = (await handshake(node))["clientId"]
    channel = "/site-9-feed-user42"
    assert (await node.send(subscribe(cid, channel)))[0]["error"] == f"403:{channel}:Forbidden channel"
    feed_token = token(resource="feed", action="read", feed_id="user42")
    wrong = await node.send(
        subscribe(
            cid,
            channel,
            ext={
                "user_id": "7",
                "api_key": "key9",
                "signature": token(resource="feed", action="read", feed_id="user43"),
            },
        )
    )
    assert wrong[0]["error"].startswith("403:")
    ok = await node.send(
        subscribe(cid, channel, ext={"user_id": "42", "api_key": "key9", "signature": feed_token})
    )
    assert ok[0]["successful"], ok


async def test_publish_rate_per_client_and_handshake_rate_per_ip() -> None:
    node = secured(publishes_per_client_per_s=2.0, handshakes_per_ip_per_s=1.0)
    cid = (await handshake(node))["clientId"]
    results = [(await node.send({"channel": "/r", "data": i, "clientId": cid}))[0] for i in range(6)]
    assert [r["successful"] for r in results] == [True] * 4 + [False] * 2, "burst of 2 s x 2/s"
    assert results[-1]["error"] == "429:publish:Rate limit exceeded"
    node.clock.now += 1.0
    assert (await node.send({"channel": "/r", "data": "later", "clientId": cid}))[0]["successful"]
    assert node.stats.limits["publish_rate_client"] == 2

    from realtime.server import Context

    hs = {"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"]}
    answers = []
    for _ in range(4):
        result = await node.server.process([dict(hs)], Context("long-polling", remote="10.9.9.9"))
        answers.append(result.replies[0])
    assert [b'"successful":true' in a for a in answers] == [True, True, False, False]


async def test_sessions_per_ip() -> None:
    from realtime.server import Context

    node = secured(max_sessions_per_ip=2)
    hs = {"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"]}
    results = [
        (await node.server.process([dict(hs)], Context("long-polling", remote="10.1.1.1"))).replies[0]
        for _ in range(3)
    ]
    assert [b"clientId" in r for r in results] == [True, True, False]
    assert len(node.engine.sessions) == 2
    first = next(iter(node.engine.sessions.values()))
    node.engine.destroy(first, "disconnected")
    again = await node.server.process([dict(hs)], Context("long-polling", remote="10.1.1.1"))
    assert b"clientId" in again.replies[0], "a closed session frees its slot"


async def test_without_declared_apps_an_unverifiable_token_is_ignored_not_refused() -> None:
    """Faye apps may put their own token in ext; with no apps configured it proves nothing."""
    node = make_node()
    reply = await handshake(node, {"token": "my-own-scheme"})
    assert reply["successful"]
    assert node.engine.sessions[reply["clientId"]].user_id is None
