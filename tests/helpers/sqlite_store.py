"""Start an embedded feed store for a test and close it however the test ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from feeds.store.sqlite import SqliteStore


@asynccontextmanager
async def running(store: SqliteStore) -> AsyncIterator[SqliteStore]:
    await store.start()
    try:
        yield store
    finally:
        await store.close()
