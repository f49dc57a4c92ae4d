"""Serve ASGI apps with real uvicorn on free loopback ports inside the test's loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from helpers.net import free_port
from realtime.transports.ws_protocol import FastWebSocketProtocol


@contextlib.asynccontextmanager
async def serving(app: Any, ws: Any = FastWebSocketProtocol) -> AsyncIterator[str]:
    """Run ``app`` until the block ends; yields its base URL. ``ws="websockets-sansio"``
    serves it as any ASGI app, without this project's WebSocket fast paths."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="on",
        log_level="warning",
        ws=ws,
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.01)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
