"""The push journal through FeedService: resuming, bounds, and a process killed mid-push (SQLite and
Redis), which must lose no timeline copy."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import textwrap
import time
import uuid
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import stream
from helpers.redis_keys import drop_prefix

from feeds.activity import Activity
from feeds.apps import App
from feeds.config import FanoutConfig, FeedGroup
from feeds.notify import FeedUpdate
from feeds.pushes import MAX_ATTEMPTS, PUSH_CHUNK
from feeds.service import FeedService
from feeds.store.base import Entry, Follow, PushJob, Store
from feeds.store.redis import RedisStore
from feeds.store.sqlite import SqliteStore

APP = App("9", "pushkey", "pushsecret-0123456789abcdef-0123456789abcdef")
T0 = 1_750_000_000.0
GROUPS = [FeedGroup("user"), FeedGroup("timeline")]
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


class Recorder:
    def __init__(self) -> None:
        self.updates: list[FeedUpdate] = []

    async def feeds_changed(self, updates: Sequence[FeedUpdate]) -> None:
        self.updates.extend(updates)

    def watched(self, feed_keys: Sequence[str]) -> list[str]:
        return list(feed_keys)


def service(store: Store, now: float = T0, notifier: Recorder | None = None, **cfg: Any) -> FeedService:
    config = FanoutConfig(inactive_after_s=100, follower_count_ttl_s=0, **cfg)
    return FeedService(store, [APP], GROUPS, notifier, fanout=config, clock=lambda: now)


async def journal_push(store: Store, n_followers: int, *, lease_until_us: int) -> tuple[Activity, list[str]]:
    """What a process killed right after acknowledging a large push leaves behind."""
    act = Activity(actor="big", verb="post", object="o", time_us=int(T0 * 1e6), id=1 << 40)
    await store.put_activities(APP.app_id, [act])
    fans = [f"{APP.app_id}/timeline:{i}" for i in range(n_followers)]
    pushed = Entry(act.id, "user:big")
    jobs = [
        PushJob(APP.app_id, pushed, 100, tuple(fans[i : i + PUSH_CHUNK]))
        for i in range(0, len(fans), PUSH_CHUNK)
    ]
    own = f"{APP.app_id}/user:big"
    await store.add_entries_and_jobs([own], [Entry(act.id)], 100, jobs, lease_until_us)
    return act, fans


async def holding(store: Store, feeds: Sequence[str], activity_id: int) -> int:
    return sum([bool(await store.get_entries(f, [activity_id])) for f in feeds])


async def test_resume_pushes_journalled_chunks_once_their_lease_ends(store: Store) -> None:
    act, fans = await journal_push(store, 1100, lease_until_us=int(T0 * 1e6) + 10)
    recorder = Recorder()
    assert await service(store, T0, recorder).pushes.resume() == 0  # still leased to its writer
    assert await service(store, T0 + 1, recorder).pushes.resume() == -(-1100 // PUSH_CHUNK)
    assert await holding(store, fans, act.id) == 1100
    assert await store.push_job_count() == 0
    notified = {u.feed_id for u in recorder.updates}
    assert len(notified) == 1100 and all(u.new[0]["origin"] == "user:big" for u in recorder.updates)


async def test_the_sweep_takes_records_whose_lease_ends_later(store: Store) -> None:
    act, fans = await journal_push(store, 600, lease_until_us=int(T0 * 1e6) + 10_000_000)
    now = [T0]
    config = FanoutConfig(push_lease_s=0.2)  # the sweep runs every 0.5 s (its floor)
    svc = FeedService(store, [APP], GROUPS, fanout=config, clock=lambda: now[0])
    svc.pushes.start()  # the store fixture started the store already
    try:
        await svc.drain()  # the first pass: the lease still runs
        assert await store.push_job_count() == -(-600 // PUSH_CHUNK)
        now[0] = T0 + 11
        await asyncio.sleep(0.7)  # past the sweep's first wake-up, which tracks a pass...
        await svc.drain()  # ...that drain waits for
        assert await store.push_job_count() == 0
        assert await holding(store, fans, act.id) == 600
    finally:
        await svc.pushes.close()


async def test_a_removed_activity_is_not_pushed_by_a_resume(store: Store) -> None:
    act, fans = await journal_push(store, 600, lease_until_us=0)
    svc = service(store)
    await svc.remove_activity(APP, svc.feed(APP, "user", "big"), str(act.id), by_foreign_id=False)
    await svc.pushes.resume()
    assert await holding(store, fans, act.id) == 0
    assert await store.push_job_count() == 0


async def test_a_record_that_keeps_failing_is_dropped(store: Store) -> None:
    bad = PushJob(APP.app_id, Entry(5, origin="not a feed id"), 10, ("9/timeline:1",))
    await store.add_entries_and_jobs(["9/user:x"], [Entry(5)], 10, [bad], lease_until_us=0)
    lease_s = FanoutConfig().push_lease_s
    for attempt in range(MAX_ATTEMPTS + 1):
        assert await store.push_job_count() == 1
        await service(store, T0 + attempt * (lease_s + 1)).pushes.resume()
    assert await store.push_job_count() == 0


async def test_past_the_in_flight_bound_large_pushes_are_written_before_the_ack(store: Store) -> None:
    svc = service(store, inline_fanout=2, max_pending_push_jobs=0)
    fans = [svc.feed(APP, "timeline", str(i)) for i in range(5)]
    for fan in fans:
        await svc.follow(APP, fan, svc.feed(APP, "user", "big"))
    (act,) = await svc.add_activities(
        APP, svc.feed(APP, "user", "big"), [{"actor": "big", "verb": "v", "object": "o"}]
    )
    assert await store.push_job_count() == 0
    assert await holding(store, [f.key for f in fans], int(act["id"])) == 5  # no drain needed


async def test_a_background_push_leaves_an_empty_journal(store: Store) -> None:
    svc = service(store, inline_fanout=2)
    fans = [svc.feed(APP, "timeline", str(i)) for i in range(5)]
    for fan in fans:
        await svc.follow(APP, fan, svc.feed(APP, "user", "big"))
    (act,) = await svc.add_activities(
        APP, svc.feed(APP, "user", "big"), [{"actor": "big", "verb": "v", "object": "o"}]
    )
    await svc.drain()
    assert await holding(store, [f.key for f in fans], int(act["id"])) == 5
    assert await store.push_job_count() == 0


# --- a real process killed after acknowledging over HTTP ------------------------------------------
CHILD = textwrap.dedent(
    """
    import asyncio, socket, sys
    import uvicorn
    from feeds.api import FeedApi
    from feeds.apps import App
    from feeds.config import FanoutConfig
    from feeds.service import FeedService
    from feeds.store.redis import RedisStore
    from feeds.store.sqlite import SqliteStore

    kind, where, prefix = sys.argv[1:4]
    # sqlite-direct: no pending pushes, so a large push takes the journal as with Redis
    direct = kind == "sqlite-direct"
    if kind.startswith("sqlite"):
        store = SqliteStore(where, max_pending=0) if direct else SqliteStore(where)
    else:
        store = RedisStore(where, prefix=prefix)
    # the test-only knob: the background push waits, so the kill lands after the ack and before it
    service = FeedService(store, [App(*sys.argv[4:7])], fanout=FanoutConfig(push_delay_s=3600))

    app = FeedApi(service, lifespan=True)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", loop="asyncio")
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))
    """
)


async def kill_after_http_ack(kind: str, where: str, prefix: str) -> str:
    """Start the child, post one activity by the big author over HTTP, SIGKILL the child as soon as
    the response arrives; returns the activity id."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, kind, where, prefix, APP.app_id, APP.api_key, APP.api_secret,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        port = int(await asyncio.wait_for(proc.stdout.readline(), 30))
        client = stream.connect(
            APP.api_key, APP.api_secret, app_id=APP.app_id, base_url=f"http://localhost:{port}"
        )
        feed = client.feed("user", "big")
        posted = await asyncio.to_thread(feed.add_activity, {"actor": "big", "verb": "post", "object": "o"})
        proc.kill()
        assert await asyncio.wait_for(proc.wait(), 30) == -9
        return str(posted["id"])
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def prepare_followers(store: Store, n: int) -> list[str]:
    """``n`` timelines following user:big, all read just now (so all are pushed to)."""
    fans = [f"{APP.app_id}/timeline:{i}" for i in range(n)]
    await store.follow([Follow(f, f"{APP.app_id}/user:big", i) for i, f in enumerate(fans)])
    now_us = int(time.time() * 1e6)
    await asyncio.gather(*(store.set_last_read(f, now_us) for f in fans))
    return fans


async def check_crash_and_resume(
    fresh: Any, kind: str, where: str, prefix: str, clock_ahead_s: float
) -> None:
    """``fresh()`` opens the store the child wrote to (not started)."""
    store = fresh()
    await store.start()
    try:
        fans = await prepare_followers(store, 1200)  # > inline_fanout (500): journalled in chunks
    finally:
        await store.close()
    posted = int(await kill_after_http_ack(kind, where, prefix))

    store = fresh()
    await store.start()
    try:  # the kill landed between the ack and the push: copies missing, the journal holds them
        assert await store.get_entries(f"{APP.app_id}/user:big", [posted]) != []
        assert await holding(store, fans, posted) == 0
        assert await store.push_job_count() == -(-1200 // PUSH_CHUNK)
    finally:
        await store.close()

    if clock_ahead_s:  # the dead process's lease still runs: nobody may take its records yet
        store = fresh()
        await store.start()
        try:
            assert await service(store, time.time()).pushes.resume() == 0
        finally:
            await store.close()
    recorder = Recorder()
    now = time.time() + clock_ahead_s
    svc = FeedService(fresh(), [APP], GROUPS, recorder, clock=lambda: now)
    await svc.start()
    try:
        await svc.drain()
        assert await holding(svc.store, fans, posted) == 1200
        assert await svc.store.push_job_count() == 0
        assert {u.feed_id for u in recorder.updates} == {f.split("/")[1] for f in fans}
    finally:
        await svc.close()


async def test_a_killed_sqlite_process_loses_no_acknowledged_push(tmp_path: Path) -> None:
    path = str(tmp_path / "feeds.db")
    fresh = lambda: SqliteStore(path, max_pending=0)  # noqa: E731
    await check_crash_and_resume(fresh, "sqlite-direct", path, "", clock_ahead_s=0)


@pytest.mark.redis
async def test_a_killed_redis_node_loses_no_acknowledged_push() -> None:
    prefix = f"test-feeds-{uuid.uuid4().hex}:"
    try:
        # a Redis store keeps leases across a restart (other nodes may hold them): a node whose
        # clock is past the dead node's lease (60 s by default) takes its records
        fresh = lambda: RedisStore(REDIS_URL, prefix=prefix)  # noqa: E731
        await check_crash_and_resume(fresh, "redis", REDIS_URL, prefix, clock_ahead_s=120)
    finally:
        await drop_prefix(REDIS_URL, prefix)


async def test_a_killed_sqlite_process_loses_no_pending_push(tmp_path: Path) -> None:
    """Pushes wait in memory behind the SQLite push log, those to more than inline_fanout (500)
    followers too (no journal); a node killed right after acknowledging the post has them back at
    its next start, pending again until a merge writes them."""
    path = str(tmp_path / "feeds.db")
    store = SqliteStore(path)
    await store.start()
    try:
        fans = await prepare_followers(store, 1200)
    finally:
        await store.close()
    posted = int(await kill_after_http_ack("sqlite", path, ""))
    with closing(sqlite3.connect(path)) as conn:  # the kill came before any merge
        assert conn.execute("SELECT count(*) FROM push_log").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM push_jobs").fetchone() == (0,)
    store = SqliteStore(path)
    await store.start()
    try:
        assert await holding(store, fans, posted) == 1200
        assert store.pending_entries == 1200  # loaded back from the log, which stays until merged
        assert await store.merge_pending() == 1200
        assert await holding(store, fans, posted) == 1200
    finally:
        await store.close()
