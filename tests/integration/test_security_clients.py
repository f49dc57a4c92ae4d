"""Issue 5 with real clients: tokens over the faye npm client, forged/expired/wrong-app
tokens over raw HTTP, the WebSocket Origin allow-list, and hostile bytes on the wire."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
import websockets

from .conftest import NodeRunner, Server, ServerFactory

SECRET = "integration-secret-" * 3
OTHER_SECRET = "another-app-secret-" * 3
CONFIG = f"""
[[apps]]
app_id = "101"
api_key = "key101"
api_secret = "{SECRET}"

[[apps]]
app_id = "202"
api_key = "key202"
api_secret_env = "IT_SECOND_APP_SECRET"

[[channels]]
pattern = "/users/{{user}}/**"
subscribe = "owner"
publish = "server"
"""


def token(secret: str = SECRET, **claims: Any) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


SERVER_TOKEN = token(resource="*", action="*", feed_id="*", api_key="key101")


@pytest.fixture
def secured(server_factory: ServerFactory, tmp_path: Path) -> Server:
    cfg = tmp_path / "secure.toml"
    cfg.write_text(CONFIG)
    return server_factory(
        args=["--config", str(cfg)],
        env={"IT_SECOND_APP_SECRET": OTHER_SECRET, "REALTIME_WS_ORIGINS": "https://good.example"},
    )


@pytest.mark.node
def test_faye_client_with_a_token_extension_reads_its_own_channel(node: NodeRunner, secured: Server) -> None:
    mine = token(user_id="42", api_key="key101")
    run = node("faye_auth.js", secured.url, mine, "/users/42/inbox", SERVER_TOKEN).check()
    assert run.one("subscribed")["ok"] and run.one("published")["ok"]
    assert run.one("received")["data"] == [{"hello": "owner"}]


@pytest.mark.node
def test_faye_client_is_refused_another_users_channel(node: NodeRunner, secured: Server) -> None:
    theirs = token(user_id="43", api_key="key101")
    run = node("faye_auth.js", secured.url, theirs, "/users/42/inbox", "-").check()
    refused = run.one("subscribed")
    assert refused["ok"] is False and refused["error"]["code"] == 403


async def post(url: str, body: Any) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(url, json=body)
        assert response.status_code == 200, response.text
        result: list[dict[str, Any]] = response.json()
        return result


def handshake(ext: dict[str, Any]) -> dict[str, Any]:
    return {
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": ["long-polling"],
        "ext": ext,
    }


@pytest.mark.parametrize(
    ("ext", "reason"),
    [
        ({"token": token("forged-secret-" * 4, user_id="42"), "api_key": "key101"}, "invalid token"),
        ({"token": token(user_id="42", exp=int(time.time()) - 5), "api_key": "key101"}, "token expired"),
        ({"token": token(user_id="42"), "api_key": "key202"}, "invalid token"),  # signed by app 101
        ({"token": token(user_id="42"), "api_key": "no-such-key"}, "unknown api_key"),
        ({"token": "garbage", "api_key": "key101"}, "invalid token"),
    ],
)
async def test_bad_tokens_are_refused_with_403(secured: Server, ext: dict[str, Any], reason: str) -> None:
    reply = (await post(secured.url, [handshake(ext)]))[0]
    assert reply["successful"] is False and "clientId" not in reply
    assert reply["error"] == f"403::Invalid token: {reason}"


async def test_second_app_secret_comes_from_the_environment(secured: Server) -> None:
    ok = (
        await post(secured.url, [handshake({"token": token(OTHER_SECRET, user_id="9"), "api_key": "key202"})])
    )[0]
    assert ok["successful"], ok


async def test_server_only_publish_needs_a_server_token_and_credentials_never_leak(secured: Server) -> None:
    anonymous = (await post(secured.url, [{"channel": "/users/42/inbox", "data": 1}]))[0]
    assert anonymous["error"] == "403:/users/42/inbox:Forbidden channel"
    user = {"token": token(user_id="42"), "api_key": "key101"}
    assert (await post(secured.url, [{"channel": "/users/42/inbox", "data": 1, "ext": user}]))[0][
        "error"
    ].startswith("403")
    async with httpx.AsyncClient(timeout=10) as http:
        metrics = (await http.get(secured.base_url + "/metrics")).text
    assert 'realtime_limit_rejections_total{limit="auth"}' in metrics


async def test_websocket_origin_allow_list(secured: Server) -> None:
    async with websockets.connect(secured.ws_url, origin="https://good.example") as ws:  # type: ignore[arg-type]
        await ws.send(orjson.dumps([handshake({})]).decode())
        assert orjson.loads(await ws.recv())[0]["successful"]
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(secured.ws_url, origin="https://evil.example"):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc for RSS")
async def test_hostile_bytes_get_errors_and_memory_stays_bounded(secured: Server) -> None:
    rng = random.Random(5)
    seeds = [
        b'[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]',
        b'{"channel":"/a","data":{"x":[1,2,3]}}',
        b'[{"channel":"/meta/subscribe","clientId":"x","subscription":"/a"}]',
    ]
    async with httpx.AsyncClient(timeout=10) as http:
        before = rss_kb(secured.proc.pid)
        for i in range(600):
            kind = i % 4
            if kind == 0:
                body = os.urandom(rng.randrange(1, 300))
            elif kind == 1:
                seed = bytearray(rng.choice(seeds))
                for _ in range(rng.randrange(1, 6)):
                    seed[rng.randrange(len(seed))] = rng.randrange(256)
                body = bytes(seed)
            elif kind == 2:
                body = b"[" + b",".join([b"{}"] * rng.randrange(90, 300)) + b"]"
            else:
                body = b'{"channel":"/a","data":"' + b"x" * rng.choice([10, 2_000_000]) + b'"}'
            response = await http.post(
                secured.url, content=body, headers={"content-type": "application/json"}
            )
            assert response.status_code in (200, 400, 413), (response.status_code, body[:80])
            if response.status_code == 200:
                for reply in response.json():
                    if reply.get("successful") is False:
                        assert reply["error"].count(":") >= 2
            else:
                assert (
                    response.headers["content-type"].startswith("text/plain")
                    and "Traceback" not in response.text
                )
        after = rss_kb(secured.proc.pid)
    assert secured.is_healthy()
    assert after - before < 64_000, f"RSS grew by {after - before} kB over 600 hostile requests"
