"""HTTP transport details: form bodies, JSON-P, CORS, bad input, limits (bayeux-spec.md §7)."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import quote

import httpx
import pytest

from .bayeux_wire import Wire, fresh_channel
from .conftest import Server

HANDSHAKE = {"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"]}
CORS_HEADERS = {"accept", "authorization", "content-type", "pragma", "x-requested-with"}


def assert_json_reply_headers(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache, no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert int(response.headers["content-length"]) == len(response.content)


async def assert_bad_request(response: httpx.Response, server: Server) -> None:
    assert response.status_code == 400, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("text/plain")
    assert server.is_healthy()


async def test_json_post_reply_headers(wire: Wire) -> None:
    response = await wire.client.post(wire.url, json=[HANDSHAKE])
    assert_json_reply_headers(response)
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize(
    "content_type", ["text/plain;charset=UTF-8", "application/x-www-form-urlencoded", None]
)
async def test_form_encoded_message_body(wire: Wire, content_type: str | None) -> None:
    body = "message=" + quote(json.dumps([{**HANDSHAKE, "id": "f1"}]))
    headers = {"content-type": content_type} if content_type else {}
    response = await wire.client.post(wire.url, content=body.encode(), headers=headers)
    assert_json_reply_headers(response)
    [reply] = response.json()
    assert reply["id"] == "f1" and reply["successful"] is True


async def test_json_content_type_with_parameters_and_a_bare_object(wire: Wire) -> None:
    response = await wire.client.post(
        wire.url,
        content=json.dumps({**HANDSHAKE, "id": "o"}).encode(),
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert_json_reply_headers(response)
    assert [r["id"] for r in response.json()] == ["o"]
    empty = await wire.client.post(wire.url, json=[])
    assert empty.status_code == 200 and empty.json() == []


async def test_cometd_style_message_type_suffix_is_under_the_mount(wire: Wire) -> None:
    response = await wire.client.post(wire.url + "/handshake", json=[HANDSHAKE])
    assert_json_reply_headers(response)
    assert response.json()[0]["successful"] is True


@pytest.mark.parametrize(
    ("callback", "expected"), [("cb", "cb"), ("a.b_c$1", "a.b_c$1"), (None, "jsonpcallback")]
)
async def test_jsonp_get(wire: Wire, callback: str | None, expected: str) -> None:
    params = {"message": json.dumps([{**HANDSHAKE, "id": "j"}])}
    if callback is not None:
        params["jsonp"] = callback
    response = await wire.client.get(wire.url, params=params)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["content-disposition"] == "attachment; filename=f.txt"
    assert response.headers["cache-control"] == "no-cache, no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    body = response.text
    prefix = f"/**/{expected}("
    assert body.startswith(prefix) and body.endswith(");"), body
    [reply] = json.loads(body[len(prefix) : -2])
    assert reply["id"] == "j" and reply["successful"] is True


@pytest.mark.parametrize("callback", ["alert(1)", "1abc", "a..b", "a-b", "</script>"])
async def test_jsonp_rejects_unsafe_callbacks(wire: Wire, server: Server, callback: str) -> None:
    params = {"message": json.dumps([HANDSHAKE]), "jsonp": callback}
    await assert_bad_request(await wire.client.get(wire.url, params=params), server)


async def test_jsonp_escapes_line_separators(wire: Wire) -> None:
    channel = fresh_channel()
    client_id = await wire.session(channel)
    await wire.publish(channel, "a\u2028b\u2029c")
    message = json.dumps([wire.connect_message(client_id, 0)])
    response = await wire.client.get(wire.url, params={"message": message, "jsonp": "cb"})
    assert response.status_code == 200
    assert "\u2028" not in response.text and "\u2029" not in response.text
    assert "\\u2028" in response.text and "\\u2029" in response.text
    replies = json.loads(response.text[len("/**/cb(") : -2])
    assert replies[1]["data"] == "a\u2028b\u2029c"


async def test_cors_headers_reflect_the_origin(wire: Wire) -> None:
    origin = "http://app.example"
    response = await wire.client.post(wire.url, json=[HANDSHAKE], headers={"origin": origin})
    assert_json_reply_headers(response)
    assert response.headers["access-control-allow-origin"] == origin
    assert response.headers["access-control-allow-credentials"] == "true"


async def test_cors_preflight(wire: Wire) -> None:
    origin = "http://app.example"
    response = await wire.client.options(
        wire.url,
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type, pragma",
        },
    )
    assert response.status_code == 200 and response.content == b""
    assert response.headers["access-control-allow-origin"] == origin
    assert response.headers["access-control-allow-credentials"] == "true"
    allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert allowed >= CORS_HEADERS
    methods = {m.strip().upper() for m in response.headers["access-control-allow-methods"].split(",")}
    assert methods >= {"POST", "GET"}
    assert response.headers["access-control-max-age"] == "86400"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b"{not json"),
        ("application/json", b'"x"'),
        ("application/json", b"42"),
        ("application/json", b"true"),
        ("application/json", b"\xff\xfe\x00garbage"),
        ("application/json", b"[1, 2]"),
        ("text/plain", b"foo=bar"),
        ("text/plain", b"message=%7Bnot"),
        ("application/x-www-form-urlencoded", b""),
    ],
)
async def test_garbage_body_is_a_bad_request(
    wire: Wire, server: Server, content_type: str, body: bytes
) -> None:
    response = await wire.client.post(wire.url, content=body, headers={"content-type": content_type})
    if body == b"[1, 2]":
        # Elements that are not objects: an HTTP 400 or a Bayeux error per element, never a crash.
        assert response.status_code in (200, 400), response.text
        if response.status_code == 200:
            assert all(r.get("successful") is False for r in response.json())
        assert server.is_healthy()
        return
    await assert_bad_request(response, server)


async def test_get_without_message_and_other_methods_are_bad_requests(wire: Wire, server: Server) -> None:
    await assert_bad_request(await wire.client.get(wire.url), server)
    await assert_bad_request(await wire.client.get(wire.url, params={"message": "{oops"}), server)
    for method in ("PUT", "DELETE", "PATCH"):
        await assert_bad_request(await wire.client.request(method, wire.url, json=[HANDSHAKE]), server)


@pytest.mark.parametrize(
    "message",
    [
        {"channel": 42, "data": 1},
        {"data": 1},
        {"channel": "/meta/handshake", "version": 1, "supportedConnectionTypes": "long-polling"},
        {"channel": "/meta/subscribe", "clientId": ["x"], "subscription": {"a": 1}},
        {"channel": "/meta/connect", "clientId": {"x": 1}, "connectionType": 7, "advice": "soon"},
    ],
)
async def test_wrong_types_get_an_error_not_a_crash(
    wire: Wire, server: Server, message: dict[str, object]
) -> None:
    response = await wire.client.post(wire.url, json=[message])
    assert response.status_code in (200, 400), response.text
    if response.status_code == 200:
        replies = response.json()
        assert isinstance(replies, list) and len(replies) == 1
        assert replies[0]["successful"] is False, replies
    assert server.is_healthy()


async def test_superseded_connect_is_answered(wire: Wire) -> None:
    client_id = await wire.session()
    first = asyncio.create_task(wire.connect(client_id))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    second = asyncio.create_task(wire.connect(client_id))
    replies = await asyncio.wait_for(first, timeout=wire.timeout_s + 3)
    assert time.monotonic() - started < 1.0, "the older connect should be answered when a new one arrives"
    assert replies[0]["channel"] == "/meta/connect" and replies[0]["successful"] is True
    held = await asyncio.wait_for(second, timeout=wire.timeout_s + 3)
    assert held[0]["successful"] is True


async def test_connect_returns_early_when_a_message_arrives(wire: Wire) -> None:
    channel = fresh_channel()
    client_id = await wire.session(channel)
    poll = asyncio.create_task(wire.timed_connect(client_id))
    await asyncio.sleep(0.3)
    await wire.publish(channel, {"hi": 1})
    elapsed, replies = await asyncio.wait_for(poll, timeout=wire.timeout_s + 3)
    assert elapsed < 1.5
    assert replies[0]["channel"] == "/meta/connect"
    assert [m["data"] for m in replies[1:]] == [{"hi": 1}]


async def test_no_message_is_flushed_into_a_dead_long_poll(wire: Wire, server: Server) -> None:
    channel = fresh_channel()
    client_id = await wire.session(channel)
    body = json.dumps([wire.connect_message(client_id)]).encode()
    _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        b"POST /bayeux HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.close()  # the client goes away while its connect is held
    await writer.wait_closed()
    await asyncio.sleep(0.3)
    await wire.publish(channel, "kept")
    got = await wire.drain(client_id, 1, within_s=3.0)
    assert [m["data"] for m in got] == ["kept"]


async def test_jsonp_connect_is_held_like_a_post(wire: Wire) -> None:
    client_id = await wire.session()
    message = {**wire.connect_message(client_id), "connectionType": "callback-polling"}
    started = time.monotonic()
    response = await wire.client.get(wire.url, params={"message": json.dumps([message]), "jsonp": "cb"})
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    [reply] = json.loads(response.text[len("/**/cb(") : -2])
    assert reply["successful"] is True and reply["channel"] == "/meta/connect"
    assert wire.timeout_s - 0.3 <= elapsed <= wire.timeout_s + 1.5


async def test_only_paths_under_the_mount_are_bayeux(wire: Wire, server: Server) -> None:
    assert (await wire.client.post(f"{wire.url}/any/depth", json=[HANDSHAKE])).json()[0]["successful"] is True
    for path in ("/bayeuxfoo", "/other"):
        assert (await wire.client.post(f"{server.base_url}{path}", json=[HANDSHAKE])).status_code == 404
