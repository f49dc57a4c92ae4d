from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from feeds.store.base import Store
from feeds.store.redis import RedisStore
from feeds.store.sqlite import SqliteStore

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


async def _drop_prefix(url: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Every implementation of the store seam; the Redis one under a unique key prefix."""
    impl: Store
    prefix = f"test-feeds-{uuid.uuid4().hex}:"
    if request.param == "sqlite":
        impl = SqliteStore(str(tmp_path / "feeds.db"))
    else:
        impl = RedisStore(REDIS_URL, prefix=prefix)
    await impl.start()
    try:
        yield impl
    finally:
        await impl.close()
        if request.param == "redis":
            await _drop_prefix(REDIS_URL, prefix)
