"""Start an embedded feed store for a test and close it however the test ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from feeds.store.sqlite import SqliteStore


def node_store(path: Path, **env: str) -> SqliteStore:
    """The embedded store a node builds at ``path`` from its settings, with ``env``
    (``REALTIME_...`` variables) set."""
    from realtime.feeds_bridge import build_store
    from realtime.settings import load_settings

    store = build_store(load_settings(env={"REALTIME_FEEDS_STORE": f"sqlite:{path}", **env}))
    assert isinstance(store, SqliteStore)
    return store


@asynccontextmanager
async def running(store: SqliteStore) -> AsyncIterator[SqliteStore]:
    await store.start()
    try:
        yield store
    finally:
        await store.close()
