"""The real `faye` npm client (1.4.3) against the server, over WebSocket and forced long-polling."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .conftest import NodeRun, NodeRunner, Server, ServerFactory

pytestmark = pytest.mark.node

TRANSPORTS = ["websocket", "long-polling"]


def faye(
    node: NodeRunner, srv: Server, scenario: str, transport: str, *extra: str
) -> tuple[NodeRun, list[dict[str, Any]]]:
    run = node("faye_client.js", scenario, srv.url, f"--transport={transport}", *extra).check()
    clients = run.one("clients")["clients"]
    for client in clients:
        # A forced long-polling client must never use WebSocket, and a default Node client must
        # actually have upgraded (otherwise the WebSocket variant silently tests long-polling).
        if transport == "long-polling":
            assert client["connection_types"] == ["long-polling"], run.explain()
        else:
            assert "websocket" in client["connection_types"], run.explain()
    return run, clients


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_round_trip_in_order(node: NodeRunner, server: Server, transport: str) -> None:
    run, clients = faye(node, server, "roundtrip", transport)
    assert run.one("received")["data"] == [{"text": "hello", "n": n} for n in range(1, 6)]
    for client in clients:
        assert client["connection_types"] == [transport], run.explain()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_wildcards_deliver_one_copy_per_client(node: NodeRunner, server: Server, transport: str) -> None:
    run, _ = faye(node, server, "wildcards", transport)
    counts = run.one("copies")["counts"]
    both = {"/wc/x/deep": 1, "/wc/x": 1, "/wc/end": 1}
    assert counts == {"a": both, "b": both, "c": {"/wc/x": 1, "/wc/end": 1}}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_rejections_reach_the_promise_with_faye_error_codes(
    node: NodeRunner, server: Server, transport: str
) -> None:
    run, _ = faye(node, server, "errors", transport)
    results = {(r["op"], r["channel"]): (r["ok"], r["code"], r["message"]) for r in run.all("result")}
    assert results == {
        ("publish", "/wc/*"): (False, 405, "Invalid channel"),
        ("publish", "/wc/**"): (False, 405, "Invalid channel"),
        ("publish", "/bad channel"): (False, 405, "Invalid channel"),
        ("publish", "/meta/foo"): (False, 403, "Forbidden channel"),
        ("publish", "/service/ok"): (True, None, None),
        ("subscribe", "/meta/foo"): (False, 403, "Forbidden channel"),
        ("subscribe", "/service/x"): (False, 403, "Forbidden channel"),
        ("subscribe", "/service/**"): (False, 403, "Forbidden channel"),
        ("subscribe", "/a/*/b"): (False, 405, "Invalid channel"),
    }
    assert all(r["params"] == [r["channel"]] for r in run.all("result") if not r["ok"])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_ext_from_a_client_extension_reaches_subscribers(
    node: NodeRunner, server: Server, transport: str
) -> None:
    run, _ = faye(node, server, "ext", transport)
    message = run.one("delivered")["message"]
    assert message["ext"] == {"trace": "abc", "nested": {"n": 1}}
    assert message["data"] == {"hello": "world"}
    assert message["channel"] == "/ext/ch"
    # The publisher's session must not leak to subscribers; nothing but these keys is forwarded.
    assert set(message) <= {"channel", "data", "id", "ext"}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unsubscribe_stops_delivery(node: NodeRunner, server: Server, transport: str) -> None:
    run, _ = faye(node, server, "unsubscribe", transport)
    reply = run.one("unsubscribe_reply")["reply"]
    assert reply["successful"] is True and reply["subscription"] == "/u/a"
    assert run.one("copies") == {"event": "copies", "a": 1, "b": 1}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_disconnect_ends_the_session(node: NodeRunner, server: Server, transport: str) -> None:
    run, clients = faye(node, server, "disconnect", transport)
    assert run.one("disconnected")["ok"] is True
    reply = run.one("disconnect_reply")["reply"]
    assert reply["successful"] is True and reply["channel"] == "/meta/disconnect"
    client_id = clients[0]["client_ids"][0]
    answer = httpx.post(
        server.url,
        json=[
            {
                "channel": "/meta/connect",
                "clientId": client_id,
                "connectionType": "long-polling",
                "advice": {"timeout": 0},
            }
        ],
        timeout=5.0,
    ).json()
    assert answer[0]["successful"] is False
    assert answer[0]["error"] == f"401:{client_id}:Unknown client"


@pytest.mark.slow
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_rehandshake_and_resubscribe_after_session_expiry(
    node: NodeRunner, server_factory: ServerFactory, transport: str
) -> None:
    # timeout 1 s: the session dies 2 s after its last connect; the client holds its next
    # connect back for 4 s, so the server must have forgotten it by then.
    srv = server_factory(timeout_s=1.0)
    run, clients = faye(node, srv, "rehandshake", transport, "--stall-ms=4000")
    stalled = run.one("stalling")["client_id"]
    rejected = run.one("rejected_connects")["replies"]
    assert rejected, run.explain()
    assert rejected[0]["error"] == f"401:{stalled}:Unknown client"
    assert rejected[0]["advice"] == {"reconnect": "handshake"}
    assert "clientId" not in rejected[0]
    sub = clients[0]
    assert len(sub["client_ids"]) == 2 and sub["client_ids"][0] == stalled
    assert sub["client_ids"][1] != stalled
    assert run.one("received")["data"] == [{"after": "rehandshake"}]
