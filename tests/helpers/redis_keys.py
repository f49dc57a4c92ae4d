"""Cleaning up after tests that write to the shared Redis under a unique key prefix."""

from __future__ import annotations


async def drop_prefix(url: str, prefix: str) -> None:
    """Delete every key under ``prefix``."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
