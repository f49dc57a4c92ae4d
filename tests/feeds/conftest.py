from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvicorn
from helpers.redis_keys import drop_prefix

from feeds.api import FeedApi
from feeds.apps import App
from feeds.config import DEFAULT_GROUPS, FanoutConfig, FeedGroup
from feeds.notify import FeedUpdate
from feeds.service import FeedService
from feeds.store.base import Store
from feeds.store.redis import RedisStore
from feeds.store.sqlite import SqliteStore

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(
    params=[
        "sqlite",
        "sqlite-full",
        "sqlite-merging",
        "sqlite-direct",
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Every implementation of the store seam: SQLite with its loop writer and its thread writer;
    SQLite merging pending pushes as soon as there are any (so merges race the test's own reads
    and writes) and SQLite writing pushes directly (nothing may stay pending); the Redis one under
    a unique key prefix."""
    impl: Store
    prefix = f"test-feeds-{uuid.uuid4().hex}:"
    db = str(tmp_path / "feeds.db")
    if request.param == "sqlite":
        impl = SqliteStore(db)
    elif request.param == "sqlite-full":
        impl = SqliteStore(db, durability="full")
    elif request.param == "sqlite-merging":
        impl = SqliteStore(db, merge_rows=1, merge_after_s=0.004)
    elif request.param == "sqlite-direct":
        impl = SqliteStore(db, max_pending=0)
    else:
        impl = RedisStore(REDIS_URL, prefix=prefix)
    await impl.start()
    try:
        yield impl
    finally:
        await impl.close()
        if request.param == "redis":
            await drop_prefix(REDIS_URL, prefix)


@dataclass
class RecordingNotifier:
    updates: list[FeedUpdate] = field(default_factory=list)

    async def feeds_changed(self, updates: Sequence[FeedUpdate]) -> None:
        self.updates.extend(updates)

    def watched(self, feed_keys: Sequence[str]) -> list[str]:
        return list(feed_keys)  # records every update, watched or not


def build_app(service: FeedService) -> FeedApi:
    return FeedApi(service, lifespan=True)


@contextlib.contextmanager
def run_server(service: FeedService) -> Iterator[int]:
    """Serve until the block exits; yields the port (bound on 127.0.0.1, reached as localhost)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(build_app(service), log_level="warning", lifespan="on", loop="asyncio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("feed test server did not start")
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


APP = App("1234", "testkey", "testsecret-0123456789abcdef-0123456789abcdef")
GROUPS = (*DEFAULT_GROUPS, FeedGroup("ranked", "flat", ranking={"popular": "likes * 10 - age_h"}))


@dataclass(frozen=True)
class FeedServer:
    port: int
    app: App
    notifier: RecordingNotifier


@pytest.fixture(scope="module", params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def feed_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FeedServer]:
    """A real uvicorn serving FeedApi over each store, pull threshold 3 followers."""
    notifier = RecordingNotifier()
    prefix = f"test-feeds-{uuid.uuid4().hex}:"
    store: Store
    if request.param == "sqlite":
        store = SqliteStore(str(Path(tmp_path_factory.mktemp("feeds")) / "feeds.db"))
    else:
        store = RedisStore(REDIS_URL, prefix=prefix)
    service = FeedService(store, [APP], GROUPS, notifier, fanout=FanoutConfig(pull_threshold=3))
    try:
        with run_server(service) as port:
            yield FeedServer(port, APP, notifier)
    finally:
        if request.param == "redis":
            import asyncio

            asyncio.run(drop_prefix(REDIS_URL, prefix))
