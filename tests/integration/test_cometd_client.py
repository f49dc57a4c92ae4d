"""The real `cometd` npm client (9.0.0, adapted to Node by cometd-nodejs-client 2.0.0).

cometd-nodejs-client supplies both XMLHttpRequest and a WebSocket (from `ws`), so CometD runs
over its default WebSocket transport and, with that unregistered, over long-polling.
"""

from __future__ import annotations

import pytest

from .conftest import NodeRunner, Server

pytestmark = pytest.mark.node


@pytest.mark.parametrize("transport", ["websocket", "long-polling"])
def test_handshake_subscribe_publish_receive(node: NodeRunner, server: Server, transport: str) -> None:
    run = node("cometd_client.js", "roundtrip", server.url, f"--transport={transport}").check()

    handshake = run.one("handshake")
    reply = handshake["reply"]
    assert reply["successful"] is True
    assert transport in reply["supportedConnectionTypes"]
    assert reply["advice"]["reconnect"] == "retry"
    assert reply["advice"]["timeout"] == int(server.timeout_s * 1000)
    # CometD opens with a connect of its own; it must not wait for a held poll.
    assert handshake["connected_after_ms"] < 2000

    sub = run.one("subscribe")["reply"]
    assert sub["successful"] is True and sub["subscription"] == "/cometd/room"
    assert run.one("publish")["reply"]["successful"] is True
    received = run.one("received")["message"]
    assert received["channel"] == "/cometd/room"
    assert received["data"] == {"text": "hi", "n": 1}
    assert "clientId" not in received

    bad = run.one("bad_publish")["reply"]
    assert bad["successful"] is False and bad["error"] == "405:/cometd/*:Invalid channel"
    unsub = run.one("unsubscribe")["reply"]
    assert unsub["successful"] is True and unsub["subscription"] == "/cometd/room"
    assert [d["reply"]["successful"] for d in run.all("disconnect")] == [True, True]

    for client in run.one("clients")["clients"]:
        assert client["transport"] == transport, run.explain()
        assert client["connection_types"] == [transport], run.explain()
