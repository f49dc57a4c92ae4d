"""Size and batch limits over HTTP and WebSocket, on a server started with small limits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from .bayeux_wire import Wire, fresh_channel, next_id
from .conftest import Server, start_server

MAX_BYTES = 64 * 1024
MAX_BATCH = 10
MAX_QUEUE = 20
MAX_LONG_POLLS = 2
MAX_SOCKET_BUFFER = 256 * 1024


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {
        "REALTIME_MAX_MESSAGE_BYTES": str(MAX_BYTES),
        "REALTIME_MAX_BATCH_MESSAGES": str(MAX_BATCH),
        "REALTIME_MAX_QUEUE_MESSAGES": str(MAX_QUEUE),
        "REALTIME_MAX_LONG_POLLS": str(MAX_LONG_POLLS),
        "REALTIME_MAX_SOCKET_BUFFER_BYTES": str(MAX_SOCKET_BUFFER),
    }
    srv = start_server(tmp_path_factory.mktemp("limited"), 3.0, env=env)
    yield srv
    srv.stop()


@pytest.fixture
async def lwire(limited: Server) -> AsyncIterator[Wire]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(15.0)) as client:
        yield Wire(client, limited.url, limited.timeout_s)


async def test_oversized_body_is_refused_and_the_server_stays_up(lwire: Wire, limited: Server) -> None:
    channel = fresh_channel()
    client_id = await lwire.session(channel)
    response = await lwire.client.post(lwire.url, json=[{"channel": channel, "data": "x" * (2 * MAX_BYTES)}])
    assert response.status_code in (400, 413), response.status_code
    assert response.text.strip(), "the refusal should say why"
    assert limited.is_healthy()
    # Under the limit passes; nothing of the refused request was delivered.
    assert (await lwire.publish(channel, "y" * (MAX_BYTES // 2)))["successful"] is True
    assert [m["data"] for m in await lwire.drain(client_id, 1)] == ["y" * (MAX_BYTES // 2)]


async def test_oversized_body_without_content_length_is_refused(lwire: Wire, limited: Server) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'[{"channel":"/t/chunked","data":"'
        for _ in range(2 * MAX_BYTES // 8192):
            yield b"z" * 8192
        yield b'"}]'

    response = await lwire.client.post(
        lwire.url, content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code in (400, 413), response.status_code
    assert limited.is_healthy()


async def test_batch_over_the_limit_is_rejected_whole(lwire: Wire, limited: Server) -> None:
    channel = fresh_channel()
    client_id = await lwire.session(channel)
    batch = [{"channel": channel, "data": n, "id": next_id()} for n in range(MAX_BATCH + 1)]
    response = await lwire.client.post(lwire.url, json=batch)
    if response.status_code == 200:
        assert all(r["successful"] is False for r in response.json()), response.text[:500]
    else:
        assert response.status_code in (400, 413), response.status_code
    full = [{"channel": channel, "data": n, "id": next_id()} for n in range(MAX_BATCH)]
    assert all(r["successful"] for r in await lwire.post(full))
    got = await lwire.drain(client_id, MAX_BATCH)
    assert [m["data"] for m in got] == list(range(MAX_BATCH)), "the refused batch must not be delivered"
    assert limited.is_healthy()


async def test_oversized_websocket_frame_is_refused(lwire: Wire, limited: Server) -> None:
    ws_url = limited.url.replace("http://", "ws://")
    frame = json.dumps([{"channel": "/t/ws", "data": "x" * (2 * MAX_BYTES)}])
    async with ws_connect(ws_url, max_size=None, open_timeout=5) as ws:
        await ws.send(frame)
        try:
            reply = await asyncio.wait_for(ws.recv(), timeout=5)
        except ConnectionClosed as closed:
            # Closing with 1009 (message too big) or a policy code is the usual answer.
            assert closed.rcvd is not None and closed.rcvd.code in (1008, 1009), closed
        else:
            replies = json.loads(reply)
            assert all(r.get("successful") is False for r in replies), reply[:300]
    assert limited.is_healthy()
    assert (await lwire.publish(fresh_channel(), 1))["successful"] is True


async def test_big_websocket_batch_is_refused(lwire: Wire, limited: Server) -> None:
    ws_url = limited.url.replace("http://", "ws://")
    channel = fresh_channel()
    client_id = await lwire.session(channel)
    batch = [{"channel": channel, "data": n, "id": next_id()} for n in range(MAX_BATCH + 1)]
    async with ws_connect(ws_url, open_timeout=5) as ws:
        await ws.send(json.dumps(batch))
        try:
            replies = json.loads(await asyncio.wait_for(ws.recv(), timeout=5))
            assert all(r.get("successful") is False for r in replies)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code in (1008, 1009), closed
    await lwire.publish(channel, "fence")
    assert [m["data"] for m in await lwire.drain(client_id, 1)] == ["fence"]


def overflow_count(metrics_text: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics_text)
        if "overflow" in family.name
        for sample in family.samples
        if not sample.name.endswith("_created")
    )


async def test_queue_overflow_ends_the_session_and_is_counted(lwire: Wire, limited: Server) -> None:
    before = overflow_count((await lwire.client.get(f"{limited.base_url}/metrics")).text)
    channel = fresh_channel()
    slow = await lwire.session(channel)
    for n in range(MAX_QUEUE + 3):  # nobody is polling for `slow`, so its queue fills up
        assert (await lwire.publish(channel, n))["successful"] is True
    [reply, *delivered] = await lwire.connect(slow, 0)
    assert delivered == [] and reply["successful"] is False, reply
    assert reply["advice"] == {"reconnect": "handshake"}
    assert reply["error"].startswith("401:")
    after = overflow_count((await lwire.client.get(f"{limited.base_url}/metrics")).text)
    assert after >= before + 1
    # A client that keeps up is not affected.
    keeping_up = await lwire.session(channel)
    for n in range(MAX_QUEUE - 1):
        await lwire.publish(channel, n)
    assert [m["data"] for m in await lwire.drain(keeping_up, MAX_QUEUE - 1)] == list(range(MAX_QUEUE - 1))


async def test_long_polls_over_the_limit_are_answered_at_once_with_a_back_off(lwire: Wire) -> None:
    clients = [await lwire.session() for _ in range(MAX_LONG_POLLS + 1)]
    held = [asyncio.create_task(lwire.timed_connect(c)) for c in clients[:MAX_LONG_POLLS]]
    await asyncio.sleep(0.3)
    elapsed, [reply] = await lwire.timed_connect(clients[-1])
    assert elapsed < 1.0, "a connect over the limit must not be held"
    assert reply["successful"] is True and reply["advice"]["interval"] > 0, reply
    for task in held:  # the ones within the limit were held as usual
        held_s, [held_reply] = await asyncio.wait_for(task, timeout=lwire.timeout_s + 3)
        assert held_s >= lwire.timeout_s - 0.5 and held_reply["successful"] is True


async def test_websocket_reader_that_stalls_is_cut_off(lwire: Wire, limited: Server) -> None:
    before = overflow_count((await lwire.client.get(f"{limited.base_url}/metrics")).text)
    channel = fresh_channel()
    ws_url = limited.url.replace("http://", "ws://")
    # max_queue=1: the client stops reading from TCP at once, so the server's buffer must grow.
    async with ws_connect(ws_url, max_queue=1, max_size=None, open_timeout=5) as ws:
        await ws.send(
            json.dumps(
                {"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["websocket"]}
            )
        )
        client_id = json.loads(await asyncio.wait_for(ws.recv(), timeout=3))[0]["clientId"]
        for message in (
            {"channel": "/meta/connect", "clientId": client_id, "connectionType": "websocket"},
            {"channel": "/meta/subscribe", "clientId": client_id, "subscription": channel},
        ):
            await ws.send(json.dumps(message))
            assert json.loads(await asyncio.wait_for(ws.recv(), timeout=3))[0]["successful"] is True
        await ws.send(
            json.dumps({"channel": "/meta/connect", "clientId": client_id, "connectionType": "websocket"})
        )
        chunk = "x" * (MAX_BYTES - 1024)
        alive = True
        for n in range(1000):  # far more than the kernel's and the server's buffers hold together
            assert (await lwire.publish(channel, chunk))["successful"] is True
            if n % 10 == 9:
                probe = await lwire.subscribe(client_id, fresh_channel())
                alive = probe["successful"]
                if not alive:
                    break
        assert not alive, "a reader that never reads kept its session"
        with pytest.raises(ConnectionClosed):
            for _ in range(10_000):
                await asyncio.wait_for(ws.recv(), timeout=5)
    [reply] = await lwire.connect(client_id, 0)
    assert reply["error"] == f"401:{client_id}:Unknown client" and reply["advice"] == {
        "reconnect": "handshake"
    }
    after = overflow_count((await lwire.client.get(f"{limited.base_url}/metrics")).text)
    assert after >= before + 1
    assert limited.is_healthy()
