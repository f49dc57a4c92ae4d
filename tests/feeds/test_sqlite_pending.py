"""The embedded store's pending pushes (feeds.store.sqlite_pending): durable through the push log
across a killed process, including the changes made to them while they were pending, merged into
the timelines by cycles that empty the log, and bounded in memory."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import textwrap
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest
from helpers.sqlite_store import running

from feeds.store import sqlite_merge
from feeds.store.base import Entry, Follow, Post
from feeds.store.sqlite import SqliteStore
from feeds.store.sqlite_pending import forget_log

FOLLOWERS = [f"t:{i}" for i in range(1, 41)]


def post(ident: int) -> Post:
    groups = (("t:", Entry(ident, origin="u:1", foreign_id=f"f{ident}"), 10),)
    return Post("app", "u:1", Entry(ident, foreign_id=f"f{ident}"), 10, 0, 1000, 1000, groups, ("u:1",))


async def _setup(store: SqliteStore) -> None:
    await store.follow([Follow(f, "u:1", 1) for f in FOLLOWERS])
    for f in FOLLOWERS:
        await store.set_last_read(f, 100)


def _log_rows(path: str) -> tuple[int, int]:
    with closing(sqlite3.connect(path)) as conn:
        (log,) = conn.execute("SELECT count(*) FROM push_log").fetchone()
        (drops,) = conn.execute("SELECT count(*) FROM push_log_drops").fetchone()
    return log, drops


async def test_pending_pushes_and_their_changes_survive_a_killed_process(tmp_path: Path) -> None:
    path = str(tmp_path / "f.db")
    script = textwrap.dedent(
        f"""
        import asyncio, os, sys
        sys.path[:0] = [{str(Path(__file__).parent)!r}, {str(Path(__file__).parents[1])!r}]
        from test_sqlite_pending import _setup, post
        from feeds.store.sqlite import SqliteStore

        async def main():
            store = SqliteStore({path!r}, merge_after_s=3600)
            await store.start()
            await _setup(store)
            for i in (1, 2, 3):
                assert (await store.add_and_push(post(i))).done
            assert store.pending_entries == 120  # nothing merged: all of it rests on the log
            await store.remove_entries(["t:1"], [2])
            await store.mark("t:2", [1], seen=True, read=True)
            await store.set_entry_columns(["t:3"], 3, group_key="g2", tags=["x"])
            await store.remove_origin("t:4", "u:1")
            assert [e.foreign_id for e in await store.remove_foreign_id("t:5", "f1")] == ["f1"]
            os._exit(9)  # no close(): nothing is merged, the log is all there is

        asyncio.run(main())
        """
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script)
    assert await asyncio.wait_for(proc.wait(), 30) == 9
    assert _log_rows(path)[0] == 3
    log, drops = _log_rows(path)
    assert log == 3 and drops == 5
    async with running(SqliteStore(path)) as store:
        # loaded back into memory at start, less the 5 removed; the log stays until a merge
        assert store.pending_entries == 120 - drops and _log_rows(path) == (log, drops)
        await _holds_every_change(store)
        assert await store.merge_pending() > 0
        assert store.pending_entries == 0 and _log_rows(path) == (0, 0)
        await _holds_every_change(store)


async def _holds_every_change(store: SqliteStore) -> None:
    ids = {f: [e.id for e in await store.read_entries(f, limit=10)] for f in FOLLOWERS}
    assert ids["t:1"] == [3, 1]  # the removal was not undone by loading the log
    assert ids["t:4"] == []
    assert ids["t:5"] == [3, 2]
    assert all(ids[f] == [3, 2, 1] for f in [*FOLLOWERS[5:], "t:2", "t:3"])
    assert (await store.get_entries("t:2", [1]))[0].seen  # marks kept: the stored copy wins
    assert all(e.seen for e in await store.read_entries("t:2", limit=10) if e.id == 1)
    updated = (await store.get_entries("t:3", [3]))[0]
    assert (updated.group_key, updated.tags) == ("g2", ("x",))
    assert [e.id for e in await store.read_entries("u:1", limit=10)] == [3, 2, 1]


async def test_a_merge_writes_everything_pending_and_empties_the_log(tmp_path: Path) -> None:
    path = str(tmp_path / "f.db")
    async with running(SqliteStore(path, merge_after_s=3600)) as store:
        await _setup(store)
        for i in range(1, 16):
            await store.add_and_push(post(i))
        await store.remove_entries(["t:7"], [15])
        before = {f: await store.read_entries(f, limit=20) for f in FOLLOWERS}
        assert store.pending_entries == 40 * 15 - 1 and _log_rows(path) == (15, 1)
        assert await store.merge_pending() == 40 * 15 - 1
        assert store.pending_entries == 0 and _log_rows(path) == (0, 0)
        tier = store._pending  # every entry the tier held is released, not only counted out
        assert not tier._feeds and not tier._entries and not tier._holders
        after = {f: await store.read_entries(f, limit=20) for f in FOLLOWERS}
        assert after == before
        assert [e.id for e in after["t:7"]] == list(range(14, 0, -1))  # the removal held
        with closing(sqlite3.connect(path)) as conn:  # trimmed to the cap plus the lazy slack at most
            (most,) = conn.execute(
                "SELECT max(n) FROM (SELECT count(*) n FROM entries GROUP BY feed)"
            ).fetchone()
        assert most <= 10 + 32


async def test_a_cycle_forgets_its_log_in_pieces_and_keeps_the_drops_until_the_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each piece is its own commit; a crash after some of them leaves records whose entries are
    all merged, and loading those again must not bring back a removed entry, nor for long one the
    merge had trimmed."""
    monkeypatch.setattr(sqlite_merge, "FORGET_CHUNK_SEQS", 4)
    path, copy = str(tmp_path / "f.db"), str(tmp_path / "crashed.db")
    pieces: list[tuple[int, bool, tuple[int, int]]] = []  # records, drops too, (log, drops) before

    def forget(conn: sqlite3.Connection, seqs: list[int], floor: int | None, *, drops: bool) -> None:
        log_left = conn.execute("SELECT count(*) FROM push_log").fetchone()[0]
        drops_left = conn.execute("SELECT count(*) FROM push_log_drops").fetchone()[0]
        pieces.append((len(seqs), drops, (log_left, drops_left)))
        if len(pieces) == 3:  # what a crash now would leave: the file as the first two committed it
            with closing(sqlite3.connect(path)) as source, closing(sqlite3.connect(copy)) as target:
                source.backup(target)
        forget_log(conn, seqs, floor, drops=drops)

    monkeypatch.setattr(sqlite_merge, "forget_log", forget)
    async with running(SqliteStore(path, merge_after_s=3600)) as store:
        await _setup(store)
        for i in range(1, 16):
            await store.add_and_push(post(i))
        await store.remove_entries(["t:7"], [12])
        await store.merge_pending()
        assert _log_rows(path) == (0, 0)
    assert [(n, d) for n, d, _ in pieces] == [(4, False), (4, False), (4, False), (3, True)]
    assert [before for _, _, before in pieces] == [(15, 1), (11, 1), (7, 1), (3, 1)]
    assert _log_rows(copy) == (7, 1)
    async with running(SqliteStore(copy)) as loaded:
        # the 7 records' entries are pending again, those the merge had trimmed (cap 10) with them:
        # reads show them within the lazy trim's slack, as they show any pending entry
        assert loaded.pending_entries == 7 * len(FOLLOWERS) - 1
        ids = [e.id for e in await loaded.read_entries("t:7", limit=20)]
        assert ids == [15, 14, 13, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1]  # the removed 12 stays removed
        await loaded.merge_pending()  # the first merge into each loaded feed trims it to its cap
        ids = [e.id for e in await loaded.read_entries("t:7", limit=20)]
        assert ids == [15, 14, 13, 11, 10, 9, 8, 7, 6, 5]
        assert [e.id for e in await loaded.read_entries("t:8", limit=20)] == list(range(15, 5, -1))
        assert _log_rows(copy) == (0, 0)


async def test_every_change_to_pending_entries_releases_what_the_tier_held(tmp_path: Path) -> None:
    async with running(SqliteStore(str(tmp_path / "f.db"), merge_after_s=3600)) as store:
        await _setup(store)
        for i in (1, 2, 3):
            await store.add_and_push(post(i))
        await store.remove_entries(["t:1"], [2])
        await store.mark("t:2", [1], seen=True, read=True)
        await store.set_entry_columns(["t:3"], 3, group_key="g2", tags=["x"])
        await store.remove_origin("t:4", "u:1")
        await store.remove_foreign_id("t:5", "f1")
        tier = store._pending
        assert len(tier._entries) == 3 and sum(tier._holders.values()) == store.pending_entries
        await store.merge_pending()
        assert store.pending_entries == 0
        assert not tier._feeds and not tier._entries and not tier._holders


async def test_a_clean_close_merges_for_a_bounded_time_and_leaves_the_rest_to_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_merge, "CLOSE_MERGE_S", 0.0)  # time is up after the first chunk
    monkeypatch.setattr(sqlite_merge, "MERGE_CHUNK_ROWS", 16)
    path = str(tmp_path / "f.db")
    async with running(SqliteStore(path, merge_after_s=3600)) as store:
        await _setup(store)
        for i in (1, 2, 3):
            await store.add_and_push(post(i))
    assert _log_rows(path)[0] == 3  # no record is forgotten before all its entries are written
    with closing(sqlite3.connect(path)) as conn:
        (stored,) = conn.execute("SELECT count(*) FROM entries WHERE feed LIKE 't:%'").fetchone()
    assert 0 < stored < 120
    async with running(SqliteStore(path, merge_after_s=3600)) as again:
        assert again.pending_entries == 120
        for f in FOLLOWERS:
            assert [e.id for e in await again.read_entries(f, limit=10)] == [3, 2, 1]
        assert await again.merge_pending() == 120
        assert again.pending_entries == 0 and _log_rows(path) == (0, 0)


async def test_cycles_run_by_themselves_and_a_clean_close_leaves_no_log(tmp_path: Path) -> None:
    path = str(tmp_path / "f.db")
    async with running(SqliteStore(path, merge_rows=100, merge_after_s=0.2)) as store:
        await _setup(store)
        for i in range(1, 4):  # 120 entries: over merge_rows, so a cycle starts at once
            await store.add_and_push(post(i))
        for _ in range(100):
            if store.pending_entries == 0:
                break
            await asyncio.sleep(0.02)
        assert store.pending_entries == 0
        await store.add_and_push(post(4))  # 40 entries: merged once they are merge_after_s old
        await asyncio.sleep(0.6)
        assert store.pending_entries == 0
        await store.add_and_push(post(5))
        assert store.pending_entries == 40
    assert _log_rows(path) == (0, 0)
    async with running(SqliteStore(path)) as again:
        assert [e.id for e in await again.read_entries("t:9", limit=10)] == [5, 4, 3, 2, 1]


async def test_pending_entries_are_bounded(tmp_path: Path) -> None:
    path = str(tmp_path / "f.db")
    async with running(SqliteStore(path, merge_after_s=3600, max_pending=50)) as store:
        await _setup(store)
        await store.add_and_push(post(1))  # 40 pending: logged
        await store.add_and_push(post(2))  # 40 more would pass 50: written directly
        assert store.pending_entries == 40
        assert _log_rows(path)[0] == 1
        assert [e.id for e in await store.read_entries("t:40", limit=10)] == [2, 1]


async def test_a_push_past_max_push_is_logged_while_there_is_room(tmp_path: Path) -> None:
    """max_push bounds pushes written in the post's commit; a logged push costs one record."""
    async with running(SqliteStore(str(tmp_path / "f.db"), merge_after_s=3600, max_pending=50)) as store:
        await _setup(store)
        small = lambda i: replace(post(i), max_push=5)  # noqa: E731
        first = await store.add_and_push(small(1))
        assert first.done and sorted(first.keys) == sorted(FOLLOWERS)
        assert store.pending_entries == 40
        second = await store.add_and_push(small(2))  # no room: the caller journals the push
        assert not second.done and sorted(second.keys) == sorted(FOLLOWERS)
        assert [e.id for e in await store.read_entries("t:1", limit=10)] == [1]
        assert [e.id for e in await store.read_entries("u:1", limit=10)] == [1]


async def test_under_steady_posts_a_cycle_runs_once_per_merge_interval(tmp_path: Path) -> None:
    """Each cycle waits until the oldest record *left* is merge_after_s old, so batches stay large."""
    async with running(SqliteStore(str(tmp_path / "f.db"), merge_after_s=0.3)) as store:
        await _setup(store)
        loop = asyncio.get_running_loop()
        deadline, i = loop.time() + 1.2, 0
        while loop.time() < deadline:
            i += 1
            await store.add_and_push(post(i))
            await asyncio.sleep(0.01)
        assert 2 <= store._behind.cycles <= 4, store._behind.cycles


async def test_timer_cycles_are_paced_and_explicit_merges_are_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from feeds.store import sqlite_merge

    pauses: list[float] = []
    real_sleep = asyncio.sleep

    async def recording_sleep(delay: float) -> None:
        pauses.append(delay)
        await real_sleep(0)

    async with running(SqliteStore(str(tmp_path / "f.db"), merge_after_s=3600)) as store:
        monkeypatch.setattr(sqlite_merge.asyncio, "sleep", recording_sleep)
        monkeypatch.setattr(sqlite_merge, "MERGE_CHUNK_S", 10.0)  # chunks stay at 256 rows on a slow host
        await _setup(store)
        for batch in range(2):
            for i in range(1, 16):  # 600 entries over 40 feeds: three chunks of ~256 rows
                await store.add_and_push(post(batch * 100 + i))
            pauses.clear()
            if batch == 0:
                assert await store._behind.merge(paced=True) == 600
                assert len(pauses) == 2 and all(p > 0 for p in pauses)  # between chunks, not after
            else:
                assert await store.merge_pending() == 600
                assert pauses == []


async def test_an_explicit_merge_hurries_a_paced_cycle_in_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A merge asked for (merge_pending, close) must not wait out the pauses of a timer cycle."""
    from feeds.store import sqlite_merge

    pauses: list[float] = []
    release = asyncio.Event()
    real_sleep = asyncio.sleep

    async def held_sleep(delay: float) -> None:
        pauses.append(delay)
        await release.wait()
        await real_sleep(0)

    async with running(SqliteStore(str(tmp_path / "f.db"), merge_after_s=3600)) as store:
        await _setup(store)
        for i in range(1, 16):  # 600 entries: three chunks, two pauses when paced
            await store.add_and_push(post(i))
        monkeypatch.setattr(sqlite_merge.asyncio, "sleep", held_sleep)
        monkeypatch.setattr(sqlite_merge, "MERGE_CHUNK_S", 10.0)
        try:
            cycle = asyncio.create_task(store._behind.merge(paced=True))
            while not pauses:
                await real_sleep(0.001)
            explicit = asyncio.create_task(store.merge_pending())
            await real_sleep(0.01)
            release.set()
            assert await cycle == 600
            assert len(pauses) == 1  # no pause after the explicit merge arrived
            assert await explicit == 0 and store.pending_entries == 0
        finally:
            monkeypatch.undo()


def test_chunks_shrink_when_slow_and_grow_back_within_bounds() -> None:
    from feeds.store import sqlite_merge
    from feeds.store.trim import TrimSchedule

    async def never(op: object, rows: int) -> None:
        raise AssertionError("no write expected")

    behind = sqlite_merge.WriteBehind(never, TrimSchedule())
    assert behind._chunk_rows == sqlite_merge.MERGE_CHUNK_ROWS
    per_row = sqlite_merge.MERGE_CHUNK_S / 100  # 100 rows would meet the target
    for _ in range(20):
        behind._fit_chunk(behind._chunk_rows, behind._chunk_rows * per_row)
    assert 90 <= behind._chunk_rows <= 110
    for _ in range(20):  # so slow that fewer rows than the floor would meet it
        behind._fit_chunk(behind._chunk_rows, behind._chunk_rows * sqlite_merge.MERGE_CHUNK_S / 4)
    assert behind._chunk_rows == sqlite_merge.MERGE_CHUNK_MIN_ROWS
    behind._fit_chunk(3, 1.0)  # a short last chunk is not evidence
    assert behind._chunk_rows == sqlite_merge.MERGE_CHUNK_MIN_ROWS
    for _ in range(20):
        behind._fit_chunk(behind._chunk_rows, sqlite_merge.MERGE_CHUNK_S / 100)
    assert behind._chunk_rows == sqlite_merge.MERGE_CHUNK_ROWS


def test_a_merge_chunk_takes_whole_feeds_in_id_order_and_encodes_a_shared_entry_once() -> None:
    from feeds.store.sqlite_pending import PendingEntries
    from feeds.store.sqlite_sql import entry_row

    tier = PendingEntries()
    shared, own = Entry(9, origin="u:1"), Entry(4, origin="u:2", tags=("x",))
    tier.add(1, [(("t:1", "t:2", "t:3"), shared, 10)])
    tier.add(2, [(("t:2",), own, 10)])  # a feed's cap is its group's: every push gives the same
    feeds = ["t:0", "t:1", "t:2", "t:3"]  # t:0 has nothing pending
    encoded: dict[int, tuple[object, ...]] = {}
    at, rows, taken = tier.take_rows(feeds, 0, 2, encoded)
    # whole feeds until the rows reach the bound: t:2's two entries come together, oldest first
    assert at == 3
    assert rows == [("t:1", *entry_row(shared)), ("t:2", *entry_row(own)), ("t:2", *entry_row(shared))]
    assert taken == [("t:1", [9], 10), ("t:2", [4, 9], 10)]
    at, rows, taken = tier.take_rows(feeds, at, 2, encoded)
    assert (at, rows, taken) == (4, [("t:3", *entry_row(shared))], [("t:3", [9], 10)])
    assert len(encoded) == 2  # one encoding per entry, however many feeds it was pushed to
    assert tier.count == 4 and tier.by_ids("t:2", [4, 9]) == [own, shared]  # still pending


def test_dropping_a_merged_chunk_keeps_what_arrived_since_and_releases_entries_with_their_last_feed() -> None:
    from feeds.store.sqlite_pending import PendingEntries

    tier = PendingEntries()
    shared, own = Entry(9, origin="u:1"), Entry(4, origin="u:2")
    tier.add(1, [(("t:1", "t:2", "t:3"), shared, 10)])
    tier.add(2, [(("t:2",), own, 20)])
    _, _, taken = tier.take_rows(["t:1", "t:2"], 0, 100, {})
    later = Entry(12, origin="u:3")
    tier.add(3, [(("t:1",), later, 10)])  # after the chunk took t:1
    tier.discard("t:2", [4])  # removed while the chunk was being written
    tier.drop_merged(taken)
    assert tier.count == 2
    assert tier.newest_first("t:1", None, None) == [later] and not tier.has("t:2")
    assert tier.by_ids("t:3", [9]) == [shared]  # still held by t:3
    assert tier.keep("t:1") > tier.keep("t:2")  # t:2's cap went with its last entry
    tier.drop_merged([("t:3", [9], 10), ("t:1", [12], 10)])
    assert tier.count == 0 and not tier._entries and not tier._holders and not tier._feeds


def test_the_tier_holds_each_pushed_entry_once_and_nothing_the_collector_must_walk_per_feed() -> None:
    import gc

    from feeds.store.sqlite_pending import PendingEntries

    tier = PendingEntries()
    shared = Entry(7, origin="u:1")
    tier.add(1, [(("t:1", "t:2", "t:2", "t:3"), shared, 10)])  # a key listed twice counts once
    tier.add(2, [(("t:1",), Entry(8, origin="u:2"), 10), (("n:1",), Entry(7, group_key="g"), 5)])
    assert tier.count == 5
    slots = list(tier._feeds.values())
    assert slots and not any(gc.is_tracked(slot) for slot in slots)
    assert tier.newest_first("t:1", None, None) == [Entry(8, origin="u:2"), shared]
    assert tier.by_ids("t:2", [7, 8]) == [shared]

    # the same id pushed again to a feed replaces its entry there, and only there
    tier.add(3, [(("t:3",), Entry(7, origin="u:9"), 10)])
    assert tier.count == 5
    assert tier.by_ids("t:3", [7]) == [Entry(7, origin="u:9")] and tier.by_ids("t:1", [7]) == [shared]

    assert tier.discard_where("t:1", "origin", "u:1") == [shared]
    assert tier.discard("t:2", [7, 99]) == [shared]
    assert tier.discard("t:3", [7]) == [Entry(7, origin="u:9")]
    assert tier.discard("t:1", [8]) + tier.discard("n:1", [7]) == [
        Entry(8, origin="u:2"),
        Entry(7, group_key="g"),
    ]
    assert tier.count == 0 and not tier._feeds and not tier._entries and not tier._holders
