"""One behaviour suite for every Store implementation (SQLite and Redis)."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
import redis.exceptions

from feeds.activity import Activity
from feeds.store.base import Bounds, ClaimedJob, Entry, Follow, Post, Posted, PushJob, ReadPlan, Store

APP = "app1"


def act(n: int, *, fid: str | None = None, time_us: int = 1_700_000_000_000_000) -> Activity:
    return Activity(actor=f"user:{n}", verb="post", object=f"obj:{n}", time_us=time_us, id=n, foreign_id=fid)


async def test_put_and_get_activities(store: Store) -> None:
    stored = await store.put_activities(APP, [act(10), act(20, fid="p:20")])
    assert [a.id for a in stored] == [10, 20]
    got = await store.get_activities(APP, [10, 20, 30])
    assert got == {10: act(10), 20: act(20, fid="p:20")}
    assert await store.get_activities("other-app", [10]) == {}
    bodies = await store.get_bodies(APP, [20, 99])
    assert list(bodies) == [20] and Activity.loads(bodies[20]) == act(20, fid="p:20")


async def test_foreign_id_time_is_idempotent(store: Store) -> None:
    first = await store.put_activities(APP, [act(100, fid="post:1")])
    again = await store.put_activities(APP, [act(200, fid="post:1"), act(300, fid="post:1", time_us=5)])
    assert again[0] == first[0]  # same (foreign_id, time): the stored one, not a new id
    assert again[1].id == 300  # same foreign_id, other time: a new activity
    found = await store.get_by_foreign_id_time(APP, [("post:1", 5), ("post:1", act(0).time_us), ("x", 1)])
    assert {k: v.id for k, v in found.items()} == {("post:1", 5): 300, ("post:1", act(0).time_us): 100}


async def test_colliding_id_is_bumped(store: Store) -> None:
    await store.put_activities(APP, [act(7)])
    other = Activity(actor="a", verb="v", object="o", time_us=1, id=7)
    (stored,) = await store.put_activities(APP, [other])
    assert stored.id == 8
    assert (await store.get_activities(APP, [7]))[7] == act(7)


async def test_staged_activities_are_final_before_they_are_stored(store: Store) -> None:
    await store.put_activities(APP, [act(7)])
    other = Activity(actor="a", verb="v", object="o", time_us=1, id=7)
    first = await store.stage_activities(APP, [other, act(50, fid="post:5")])
    # before the first batch is durable: its ids are taken and its (foreign_id, time) pairs known
    again = await store.stage_activities(APP, [act(8), act(60, fid="post:5"), act(8, fid="post:6")])
    assert [a.id for a in first.activities] == [8, 50]
    assert [a.id for a in again.activities] == [9, 50, 10]
    assert again.activities[1] == first.activities[1]
    posted = await store.add_and_push(post(8, "u:staged"))
    assert posted.done and [e.id for e in await store.read_entries("u:staged", limit=5)] == [8]
    await first.stored
    await again.stored
    got = await store.get_activities(APP, [7, 8, 9, 10, 50])
    assert sorted(got) == [7, 8, 9, 10, 50] and got[8].actor == "a" and got[10].foreign_id == "post:6"
    assert (await store.stage_activities(APP, [act(70, fid="post:5")])).activities == [first.activities[1]]


async def test_replace_activities_only_touches_known(store: Store) -> None:
    await store.put_activities(APP, [act(1)])
    changed = Activity(
        actor="user:1", verb="edit", object="obj:1", time_us=act(1).time_us, id=1, extra={"x": 1}
    )
    await store.replace_activities(APP, [changed, act(2)])
    assert await store.get_activities(APP, [1, 2]) == {1: changed}


async def test_entries_newest_first_with_bounds_and_offset(store: Store) -> None:
    await store.add_entries(["f:1"], [Entry(i) for i in (3, 1, 5, 2, 4)], cap=100)
    ids = lambda es: [e.id for e in es]  # noqa: E731
    assert ids(await store.read_entries("f:1", limit=10)) == [5, 4, 3, 2, 1]
    assert ids(await store.read_entries("f:1", limit=2, offset=1)) == [4, 3]
    assert ids(await store.read_entries("f:1", limit=10, bounds=Bounds(lt=4))) == [3, 2, 1]
    assert ids(await store.read_entries("f:1", limit=10, bounds=Bounds(lte=4))) == [4, 3, 2, 1]
    assert ids(await store.read_entries("f:1", limit=10, bounds=Bounds(gt=3))) == [5, 4]
    assert ids(await store.read_entries("f:1", limit=10, bounds=Bounds(gte=3, lt=5))) == [4, 3]
    assert await store.read_entries("f:2", limit=10) == []


async def test_entry_columns_round_trip_and_duplicates_ignored(store: Store) -> None:
    e = Entry(9, origin="user:2", foreign_id="fid", group_key="g", tags=("a", "b"))
    await store.add_entries(["f:1", "f:2"], [e], cap=10)
    await store.add_entries(["f:1"], [Entry(9, origin="other")], cap=10)
    assert await store.read_entries("f:1", limit=5) == [e]
    assert await store.get_entries("f:2", [9, 10]) == [e]


async def test_slim_reads_keep_ids_and_origins(store: Store) -> None:
    """A slim read (what a flat page asks for) has the full read's ids and origins, whichever of
    them came by ``add_entries`` and which by a push (pending in the embedded store)."""
    stored = [
        Entry(i, origin=f"user:{i % 3}", foreign_id=f"f{i}", tags=("t",) if i % 2 else ())
        for i in range(1, 9)
    ]
    await store.add_entries(["t:1"], stored, cap=100)
    await _follow_active(store, "u:1", {"t:1": 100})
    for ident in (20, 21):
        assert (await store.add_and_push(post(ident))).done
    cases = [
        {"limit": 25},
        {"limit": 3, "offset": 2},
        {"limit": 10, "bounds": Bounds(lt=21, gte=3)},
        {"limit": 5, "tag": "t"},
    ]
    for case in cases:
        full = await store.read_entries("t:1", **case)  # type: ignore[arg-type]
        slim = await store.read_entries("t:1", slim=True, **case)  # type: ignore[arg-type]
        assert [(e.id, e.origin) for e in slim] == [(e.id, e.origin) for e in full], case
        assert full
    assert [e.id for e in await store.read_entries("t:1", limit=3, slim=True)] == [21, 20, 8]


async def test_cap_keeps_newest(store: Store) -> None:
    await store.add_entries(["f:1"], [Entry(i) for i in range(1, 41)], cap=4)
    assert [e.id for e in await store.read_entries("f:1", limit=100)] == [40, 39, 38, 37]
    for i in range(41, 141):
        await store.add_entries(["f:1"], [Entry(i)], cap=4)
    kept = [e.id for e in await store.read_entries("f:1", limit=1000)]
    assert kept[:4] == [140, 139, 138, 137] and len(kept) <= 4 + 32  # lazy trimming: a hard bound


async def test_removals(store: Store) -> None:
    entries = [Entry(1, origin="user:1", foreign_id="x"), Entry(2, origin="user:2", foreign_id="x"), Entry(3)]
    await store.add_entries(["f:1", "f:2"], entries, cap=10)
    await store.remove_entries(["f:2"], [3])
    assert [e.id for e in await store.read_entries("f:2", limit=10)] == [2, 1]
    removed = await store.remove_foreign_id("f:1", "x")
    assert [e.id for e in removed] == [2, 1]
    assert [e.id for e in await store.read_entries("f:1", limit=10)] == [3]
    assert await store.remove_origin("f:2", "user:1") == 1
    assert [e.id for e in await store.read_entries("f:2", limit=10)] == [2]


async def test_tag_filter(store: Store) -> None:
    await store.add_entries(
        ["f:1"], [Entry(i, tags=("even",) if i % 2 == 0 else ()) for i in range(1, 9)], cap=50
    )
    got = await store.read_entries("f:1", limit=2, offset=1, tag="even")
    assert [e.id for e in got] == [6, 4]


async def test_mark_seen_and_read(store: Store) -> None:
    await store.add_entries(["n:1"], [Entry(1), Entry(2), Entry(3)], cap=10)
    await store.mark("n:1", [2], seen=True, read=False)
    flags = {e.id: (e.seen, e.read) for e in await store.read_entries("n:1", limit=10)}
    assert flags == {1: (False, False), 2: (True, False), 3: (False, False)}
    await store.mark("n:1", None, seen=False, read=True)
    flags = {e.id: (e.seen, e.read) for e in await store.read_entries("n:1", limit=10)}
    assert flags == {1: (False, True), 2: (True, True), 3: (False, True)}


async def test_follows(store: Store) -> None:
    created = await store.follow([Follow("t:1", "u:9", 1), Follow("t:2", "u:9", 2), Follow("t:1", "u:8", 3)])
    assert created == [True, True, True]
    assert await store.follow([Follow("t:1", "u:9", 4)]) == [False]
    assert [f.source for f in await store.followers("u:9")] == ["t:2", "t:1"]
    assert [f.target for f in await store.following("t:1")] == ["u:8", "u:9"]
    assert [f.source for f in await store.followers("u:9", offset=1, limit=1)] == ["t:1"]
    assert await store.follower_count("u:9") == 2
    assert await store.follower_counts(["u:9", "u:8", "u:7"]) == {"u:9": 2, "u:8": 1, "u:7": 0}
    assert await store.unfollow("t:1", "u:9") is True
    assert await store.unfollow("t:1", "u:9") is False
    assert [f.target for f in await store.following("t:1")] == ["u:8"]
    assert await store.followers("u:9") == [Follow("t:2", "u:9", 2)]
    assert await store.follower_counts(["u:9"]) == {"u:9": 1}


async def test_concurrent_writes_all_land(store: Store) -> None:
    await asyncio.gather(*(store.add_entries([f"f:{i % 3}"], [Entry(i)], cap=1000) for i in range(1, 61)))
    counts = [len(await store.read_entries(f"f:{k}", limit=100)) for k in range(3)]
    assert counts == [20, 20, 20]


async def test_last_read_and_active_followers(store: Store) -> None:
    assert await store.last_read("t:1") is None
    await store.follow([Follow("t:1", "u:1", 1), Follow("t:2", "u:1", 2), Follow("t:3", "u:1", 3)])
    await store.set_last_read("t:1", 100)
    await store.set_last_read("t:2", 50)
    await store.set_last_read("t:2", 300)
    assert await store.last_read("t:2") == 300
    assert sorted(await store.active_followers("u:1", 100)) == ["t:1", "t:2"]
    assert await store.active_followers("u:1", 101) == ["t:2"]
    assert await store.active_followers("u:2", 0) == []


def post(ident: int, feed: str = "u:1", *, cap: int = 10, max_push: int = 10, threshold: int = 100) -> Post:
    """Followers with keys "t:..." get a flat entry, "a:..." an aggregated one, anything else none."""
    groups = (
        ("t:", Entry(ident, origin=feed, foreign_id="f"), cap),
        ("a:", Entry(ident, origin=feed, foreign_id="f", group_key="g"), cap),
    )
    own = Entry(ident, foreign_id="f", tags=("x",))
    return Post(APP, feed, own, cap, 100, threshold, max_push, groups, placements=(feed, "n:9"))


async def _follow_active(store: Store, feed: str, sources: dict[str, int]) -> None:
    await store.follow([Follow(s, feed, 1) for s in sources])
    for source, last_read in sources.items():
        await store.set_last_read(source, last_read)


async def test_add_and_push_writes_own_entry_and_active_followers_by_group(store: Store) -> None:
    await _follow_active(store, "u:1", {"t:1": 100, "t:2": 99, "a:3": 500, "x:4": 100})
    posted = await store.add_and_push(post(7))
    assert posted.done and sorted(posted.keys) == ["a:3", "t:1"]
    assert await store.read_entries("u:1", limit=5) == [Entry(7, foreign_id="f", tags=("x",))]
    assert await store.read_entries("t:1", limit=5) == [Entry(7, origin="u:1", foreign_id="f")]
    assert await store.read_entries("a:3", limit=5) == [Entry(7, "u:1", "f", group_key="g")]
    assert await store.read_entries("t:2", limit=5) == []  # inactive
    assert await store.read_entries("x:4", limit=5) == []  # no group: frozen
    assert await store.placements(APP, 7) == ["n:9", "u:1"]
    await store.mark("t:1", [7], seen=True, read=False)
    again = await store.add_and_push(post(7))  # idempotent: nothing duplicated or overwritten
    assert again.done and sorted(again.keys) == ["a:3", "t:1"]
    assert await store.read_entries("t:1", limit=5) == [Entry(7, "u:1", "f", seen=True)]
    assert len(await store.read_entries("u:1", limit=5)) == 1


async def test_add_and_push_hands_large_pushes_back_or_finishes_them_and_skips_pulled_feeds(
    store: Store,
) -> None:
    await _follow_active(store, "u:1", {"t:1": 100, "t:2": 200, "x:3": 300})
    posted = await store.add_and_push(post(7, max_push=2))
    assert await store.placements(APP, 7) == ["n:9", "u:1"]
    if posted.done:  # a store that made the whole push durable in this step (SQLite's push log)
        assert sorted(posted.keys) == ["t:1", "t:2"]
        for feed in ("u:1", "t:1", "t:2"):
            assert [e.id for e in await store.read_entries(feed, limit=5)] == [7]
        await store.remove_entries(["u:1", "t:1", "t:2"], [7])
    else:
        assert sorted(posted.keys) == ["t:1", "t:2", "x:3"]
        assert await store.read_entries("u:1", limit=5) == []  # the caller journals it with the pushes
        assert await store.read_entries("t:1", limit=5) == []
    assert await store.add_and_push(post(8, threshold=2)) == Posted(True, [])  # 3 followers: pulled
    assert [e.id for e in await store.read_entries("u:1", limit=5)] == [8]
    assert await store.read_entries("t:1", limit=5) == []
    assert await store.add_and_push(post(9, "u:lonely")) == Posted(True, [])
    assert [e.id for e in await store.read_entries("u:lonely", limit=5)] == [9]


async def test_add_and_push_trims_lazily_with_a_hard_bound(store: Store) -> None:
    await _follow_active(store, "u:1", {"t:1": 100})
    for i in range(1, 101):
        await store.add_and_push(post(i, cap=4))
    for feed in ("u:1", "t:1"):
        kept = [e.id for e in await store.read_entries(feed, limit=1000)]
        assert kept[:4] == [100, 99, 98, 97] and len(kept) <= 4 + 32


async def test_read_entries_up_is_oldest_first_from_a_cursor(store: Store) -> None:
    await store.add_entries(["f:1"], [Entry(i) for i in (10, 20, 30, 40, 50)], cap=100)
    ids = lambda es: [e.id for e in es]  # noqa: E731
    assert ids(await store.read_entries_up("f:1", lowest=20, limit=2)) == [20, 30]
    assert ids(await store.read_entries_up("f:1", lowest=21, limit=10)) == [30, 40, 50]
    assert await store.read_entries_up("f:1", lowest=51, limit=10) == []
    assert await store.read_entries_up("f:2", lowest=0, limit=10) == []


async def test_set_entry_columns_keeps_other_columns(store: Store) -> None:
    old = Entry(5, origin="user:1", foreign_id="fid", group_key="old", tags=("a",))
    await store.add_entries(["f:1", "f:2"], [old, Entry(6, tags=("a",))], cap=10)
    await store.mark("f:2", [5], seen=True, read=False)
    await store.set_entry_columns(["f:1", "f:2", "f:absent"], 5, group_key="new", tags=["b", "c"])
    (e1,) = await store.get_entries("f:1", [5])
    (e2,) = await store.get_entries("f:2", [5])
    assert e1 == Entry(5, origin="user:1", foreign_id="fid", group_key="new", tags=("b", "c"))
    assert e2 == Entry(5, "user:1", "fid", "new", ("b", "c"), seen=True, read=False)
    assert [e.id for e in await store.read_entries("f:1", limit=10, tag="b")] == [5]
    assert [e.id for e in await store.read_entries("f:1", limit=10, tag="a")] == [6]
    assert await store.read_entries("f:absent", limit=10) == []  # never creates an entry
    await store.set_entry_columns([], 5, group_key="x", tags=[])


async def test_placements(store: Store) -> None:
    assert await store.placements(APP, 1) == []
    await store.add_placements(APP, 1, ["user:1", "notification:2"])
    await store.add_placements(APP, 1, ["user:1"])
    await store.add_placements("other-app", 1, ["user:9"])
    assert await store.placements(APP, 1) == ["notification:2", "user:1"]


async def test_push_journal_records_claims_and_finishes(store: Store) -> None:
    pushed = Entry(5, origin="user:a", foreign_id="f", group_key="g", tags=("x",))
    job1 = PushJob(APP, pushed, 10, ("t:1", "t:2"))
    job2 = PushJob(APP, Entry(5, origin="user:a"), 10, ("t:3",))
    ids = await store.add_entries_and_jobs(["u:a"], [Entry(5)], 10, [job1, job2], lease_until_us=1000)
    assert len(ids) == 2 and ids[0] < ids[1]
    assert await store.read_entries("u:a", limit=5) == [Entry(5)]  # the own entry, in the same write
    assert await store.push_job_count() == 2
    assert await store.claim_push_jobs(1000, 2000, 10) == []  # the lease has not ended yet
    assert await store.claim_push_jobs(1001, 2000, 1) == [ClaimedJob(ids[0], 1, job1)]
    assert await store.claim_push_jobs(1001, 2000, 10) == [ClaimedJob(ids[1], 1, job2)]  # ids[0] is leased
    assert await store.claim_push_jobs(1500, 2000, 10) == []
    again = await store.claim_push_jobs(2001, 3000, 10)
    assert again == [ClaimedJob(ids[0], 2, job1), ClaimedJob(ids[1], 2, job2)]
    await store.finish_push_job(ids[0], job1)
    assert await store.read_entries("t:1", limit=5) == [pushed]
    assert await store.get_entries("t:2", [5]) == [pushed]
    assert await store.push_job_count() == 1
    await store.finish_push_job(ids[0], job1)  # a second run of a finished record only re-pushes
    assert await store.read_entries("t:1", limit=5) == [pushed]
    await store.finish_push_job(ids[1], None)  # dropped without pushing
    assert await store.read_entries("t:3", limit=5) == []
    assert await store.push_job_count() == 0
    assert await store.claim_push_jobs(10**15, 10**15, 10) == []
    (later,) = await store.add_entries_and_jobs(["u:a"], [Entry(6)], 10, [job2], lease_until_us=0)
    assert later > ids[1]  # ids are never reused, even once the journal is empty
    assert await store.claim_push_jobs(1, 5, 10) == [ClaimedJob(later, 1, job2)]


async def test_push_journal_write_is_all_or_nothing(store: Store) -> None:
    job = PushJob(APP, Entry(5, origin="user:a"), 10, ("t:1",))
    with pytest.raises((sqlite3.IntegrityError, redis.exceptions.DataError)):  # no lease: refused
        await store.add_entries_and_jobs(["u:a"], [Entry(5)], 10, [job], None)  # type: ignore[arg-type]
    assert await store.read_entries("u:a", limit=5) == []
    assert await store.push_job_count() == 0
    assert await store.add_entries_and_jobs(["u:b"], [Entry(7)], 10, [], lease_until_us=0) == []
    assert [e.id for e in await store.read_entries("u:b", limit=5)] == [7]


async def test_read_plan_counts_followings_and_lists_pulled_ones(store: Store) -> None:
    assert await store.read_plan("t:1", 1) == ReadPlan(0, (), None)
    await store.follow([Follow("t:1", "u:big", 1), Follow("t:1", "u:small", 2), Follow("t:2", "u:big", 3)])
    await store.follow([Follow("t:3", "u:big", 4)])
    await store.set_last_read("t:1", 77)
    assert await store.read_plan("t:1", 2) == ReadPlan(2, ("u:big",), 77)  # u:big has 3 followers
    assert await store.read_plan("t:1", 3) == ReadPlan(2, (), 77)  # "more than" the threshold
    assert sorted((await store.read_plan("t:1", 0)).pulled) == ["u:big", "u:small"]
    await store.unfollow("t:1", "u:big")
    assert await store.read_plan("t:1", 0) == ReadPlan(1, ("u:small",), 77)


async def test_read_plan_follows_every_change(store: Store) -> None:
    # a read between every two changes: a store that keeps plans must see each change
    assert await store.read_plan("t:1", 1) == ReadPlan(0, (), None)
    await store.follow([Follow("t:1", "u:a", 1)])
    assert await store.read_plan("t:1", 1) == ReadPlan(1, (), None)
    await store.follow([Follow("t:2", "u:a", 2)])  # another feed's follow lifts u:a over the threshold
    assert await store.read_plan("t:1", 1) == ReadPlan(1, ("u:a",), None)
    await store.set_last_read("t:1", 5)
    assert await store.read_plan("t:1", 1) == ReadPlan(1, ("u:a",), 5)
    await store.unfollow("t:2", "u:a")  # and its unfollow takes it back below
    assert await store.read_plan("t:1", 1) == ReadPlan(1, (), 5)
    await store.unfollow("t:1", "u:a")
    assert await store.read_plan("t:1", 1) == ReadPlan(0, (), 5)
    assert await store.read_plan("t:1", 0) == ReadPlan(0, (), 5)


async def test_read_many_is_read_entries_of_each_feed(store: Store) -> None:
    await store.add_entries(
        ["m:1"], [Entry(i, tags=("t",) if i % 2 else ()) for i in (1, 2, 3, 4, 5)], cap=100
    )
    await store.add_entries(["m:2"], [Entry(i) for i in (10, 20)], cap=100)
    feeds = ["m:2", "m:none", "m:1", "m:2"]
    for bounds, tag in (
        (None, None),
        (Bounds(lt=5, gte=2), None),
        (Bounds(lte=20), "t"),
        (Bounds(gt=30), None),
    ):
        expected = [await store.read_entries(f, limit=2, bounds=bounds, tag=tag) for f in feeds]
        assert await store.read_many(feeds, limit=2, bounds=bounds, tag=tag) == expected
    assert [[e.id for e in es] for es in await store.read_many(feeds, limit=2)] == [
        [20, 10],
        [],
        [5, 4],
        [20, 10],
    ]
    assert await store.read_many([], limit=5) == []
    many = [f"m:x{i}" for i in range(120)]  # more feeds than one statement takes
    await store.add_entries(many, [Entry(7)], cap=10)
    assert all(es == [Entry(7)] for es in await store.read_many(many, limit=3))
