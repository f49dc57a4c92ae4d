"""ScriptBatch against the real Redis: replies reach their own callers, errors stay with theirs,
and a script the server has never seen is loaded and run."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
import redis.exceptions

from feeds.store.redis_batch import ScriptBatch
from tests.feeds.conftest import REDIS_URL

pytestmark = pytest.mark.redis


@pytest.fixture
async def client() -> AsyncIterator[Any]:
    r = aioredis.Redis.from_url(REDIS_URL)
    try:
        yield r
    finally:
        await r.aclose()


async def test_concurrent_calls_get_their_own_replies_and_errors(client: Any) -> None:
    key = f"test-feeds-{uuid.uuid4().hex}:s"
    add = client.register_script("redis.call('SADD', KEYS[1], ARGV[1]) return ARGV[1] * 2")
    fail = client.register_script("return redis.error_reply('no ' .. ARGV[1])")
    batch = ScriptBatch(client, max_batch=3)  # 8 calls in one iteration: three pipelines
    try:
        calls = [batch.call(fail if i == 4 else add, [key], [i]) for i in range(8)]
        replies = await asyncio.gather(*calls, return_exceptions=True)
        assert isinstance(replies[4], redis.exceptions.ResponseError) and "no 4" in str(replies[4])
        assert [r for i, r in enumerate(replies) if i != 4] == [0, 2, 4, 6, 10, 12, 14]
        assert sorted(int(m) for m in await client.smembers(key)) == [0, 1, 2, 3, 5, 6, 7]
    finally:
        await batch.close()
        await client.delete(key)


async def test_unknown_script_is_loaded_and_run(client: Any) -> None:
    marker = uuid.uuid4().hex  # a script text no server has cached yet
    script = client.register_script(f"-- {marker}\nreturn ARGV[1] .. '!'")
    assert await client.script_exists(script.sha) == [False]
    batch = ScriptBatch(client)
    try:
        assert await batch.call(script, [], ["hi"]) == b"hi!"
        assert await client.script_exists(script.sha) == [True]
    finally:
        await batch.close()
