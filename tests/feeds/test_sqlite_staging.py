"""SQLite: a post's activity row is staged into the post's own group commit (feeds.store.sqlite_stage)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal

import pytest
from helpers.sqlite_store import running

from feeds.activity import Activity
from feeds.store.base import Entry, Post
from feeds.store.sqlite import SqliteStore
from feeds.store.sqlite_stage import ActivityNotStored

APP = "a"


def activity(ident: int, fid: str | None = None) -> Activity:
    return Activity(actor="u", verb="post", object=f"o:{ident}", time_us=1_000, id=ident, foreign_id=fid)


def post(ident: int, feed: str) -> Post:
    return Post(APP, feed, Entry(ident), 10, 0, 100, 10, (), placements=(feed,))


async def test_a_post_does_not_wait_for_a_commit_of_its_own_activity(tmp_path: Path) -> None:
    async with running(SqliteStore(str(tmp_path / "f.db"))) as store:
        staged = await store.stage_activities(APP, [activity(42)])
        assert not staged.stored.done()  # queued, not committed: nothing waited for it
        assert (await store.get_activities(APP, [42])) == {}
        await store.add_and_push(post(42, f"{APP}/user:1"))
        assert staged.stored.done() and staged.stored.exception() is None  # committed with the post
        assert 42 in await store.get_activities(APP, [42])
        assert [e.id for e in await store.read_entries(f"{APP}/user:1", limit=5)] == [42]


@pytest.mark.parametrize("durability", ["normal", "full"])
async def test_a_failed_activity_insert_fails_its_post_and_writes_nothing(
    tmp_path: Path, durability: Literal["normal", "full"]
) -> None:
    path = str(tmp_path / "f.db")
    async with running(SqliteStore(path, durability=durability)) as store:
        # another writer takes the id between the store's reads and its insert: it holds the write
        # lock while the store stages, so a writer thread cannot insert first either
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        staged = await store.stage_activities(APP, [activity(42, fid="x")])
        other.execute(
            "INSERT INTO activities(app, id, foreign_id, time_us, body) VALUES (?,?,?,?,?)",
            (APP, 42, None, 5, activity(42).dumps()),
        )
        other.execute("COMMIT")
        other.close()
        with pytest.raises(ActivityNotStored):
            await store.add_and_push(post(42, f"{APP}/user:1"))
        with pytest.raises(sqlite3.IntegrityError):
            await staged.stored
        assert await store.read_entries(f"{APP}/user:1", limit=5) == []
        assert await store.placements(APP, 42) == []
        # nothing of the failed batch is held: its pair is free and its id is taken by the other row
        (again,) = (await store.stage_activities(APP, [activity(42, fid="x")])).activities
        assert again.id == 43
        await store.add_and_push(post(43, f"{APP}/user:1"))
        assert [e.id for e in await store.read_entries(f"{APP}/user:1", limit=5)] == [43]
        assert (await store.get_by_foreign_id_time(APP, [("x", 1_000)]))[("x", 1_000)].id == 43
