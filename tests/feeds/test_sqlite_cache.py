"""SQLite: how the store caches pages by the size of its database (feeds.store.sqlite_cache)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from helpers.sqlite_store import running

from feeds.store import sqlite_cache
from feeds.store.base import Entry
from feeds.store.sqlite import SqliteStore
from feeds.store.sqlite_cache import LOCK_BYTE_OFFSET, CachePlan, plan_for


def test_a_database_under_the_lock_byte_page_is_mapped_with_a_small_cache() -> None:
    assert plan_for(0, 512) == CachePlan(16 * 1024, LOCK_BYTE_OFFSET)
    assert plan_for(LOCK_BYTE_OFFSET - 1, 3) == CachePlan(3 * 1024, LOCK_BYTE_OFFSET)
    assert plan_for(LOCK_BYTE_OFFSET, 512) == CachePlan(512 * 1024, 0)


async def test_the_loop_connection_switches_once_the_database_outgrows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteStore(str(tmp_path / "f.db"), cache_mb=64, merge_after_s=0.02)
    async with running(store):
        pragmas = lambda: (store._read("PRAGMA cache_size")[0][0], store._read("PRAGMA mmap_size")[0][0])  # noqa: E731
        assert pragmas() == (-16 * 1024, LOCK_BYTE_OFFSET)
        # a "large" store from 64 KiB past its size now: the page a balance borrows is that far out
        assert store._reader is not None
        monkeypatch.setattr(sqlite_cache, "LOCK_BYTE_OFFSET", sqlite_cache.db_bytes(store._reader) + 65536)
        feeds = [f"a/user:{i}" for i in range(500)]
        await store.add_entries(feeds, [Entry(i) for i in range(1, 11)], cap=100)  # 5000 rows
        assert pragmas() == (-16 * 1024, LOCK_BYTE_OFFSET)
        switched = asyncio.get_running_loop().time() + 5
        while pragmas() != (-64 * 1024, 0):  # the merge task's tick re-plans, every 5 ms here
            assert asyncio.get_running_loop().time() < switched, "the store never re-planned"
            await asyncio.sleep(0.005)
        assert len(await store.read_entries(feeds[-1], limit=20)) == 10
    again = SqliteStore(str(tmp_path / "f.db"), cache_mb=64)
    async with running(again):  # new connections start with the large plan
        assert again._read("PRAGMA cache_size") == [(-64 * 1024,)]
        assert again._read("PRAGMA mmap_size") == [(0,)]
