"""Hybrid fan-out through FeedService with an injected clock: active/inactive followers, large
authors, capped timelines and pulls past the cap."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest

from feeds.apps import App
from feeds.config import FanoutConfig, FeedGroup
from feeds.reads import ReadParams
from feeds.service import FeedService
from feeds.store.base import Bounds, Store

APP = App("7", "k", "s" * 40)
T0 = 1_750_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def svc(store: Store, clock: Clock) -> AsyncIterator[FeedService]:
    groups = [FeedGroup("user"), FeedGroup("timeline", max_length=3), FeedGroup("agg", "aggregated")]
    cfg = FanoutConfig(pull_threshold=2, inactive_after_s=100, follower_count_ttl_s=0)
    service = FeedService(store, [APP], groups, fanout=cfg, clock=clock)
    yield service  # the store fixture starts and closes the store


async def post(svc: FeedService, user: str, obj: str) -> str:
    (act,) = await svc.add_activities(
        APP, svc.feed(APP, "user", user), [{"actor": user, "verb": "v", "object": obj}]
    )
    return str(act["id"])


async def timeline_ids(svc: FeedService, user: str, limit: int = 25) -> list[str]:
    page = await svc.read(APP, svc.feed(APP, "timeline", user), ReadParams(limit=limit))
    return [a["id"] for a in page["results"]]


async def stored_ids(store: Store, feed_key: str) -> list[str]:
    return [str(e.id) for e in await store.read_entries(feed_key, limit=100)]


async def test_inactive_follower_is_skipped_then_backfilled(
    svc: FeedService, store: Store, clock: Clock
) -> None:
    reader = svc.feed(APP, "timeline", "r")
    await svc.follow(APP, reader, svc.feed(APP, "user", "a"))
    clock.now += 1
    first = await post(svc, "a", "1")
    assert await stored_ids(store, reader.key) == [first]  # active: pushed
    clock.now += 1000
    missed = await post(svc, "a", "2")
    assert await stored_ids(store, reader.key) == [first]  # inactive: not pushed
    assert await timeline_ids(svc, "r") == [missed, first]  # the read pulls it
    assert await stored_ids(store, reader.key) == [missed, first]  # and backfills the timeline
    clock.now += 1
    third = await post(svc, "a", "3")
    assert (await stored_ids(store, reader.key))[0] == third  # active again: pushed


async def test_author_above_threshold_is_pulled_and_merged(
    svc: FeedService, store: Store, clock: Clock
) -> None:
    star = svc.feed(APP, "user", "star")
    for fan in ("f1", "f2", "f3"):
        await svc.follow(APP, svc.feed(APP, "timeline", fan), star)
    await svc.follow(APP, svc.feed(APP, "timeline", "f1"), svc.feed(APP, "user", "small"))
    clock.now += 1
    hit = await post(svc, "star", "hit")
    clock.now += 1
    note = await post(svc, "small", "note")
    assert await stored_ids(store, svc.feed(APP, "timeline", "f1").key) == [note]  # the star was not pushed
    assert await timeline_ids(svc, "f1") == [note, hit]
    assert await timeline_ids(svc, "f1", limit=1) == [note]


async def test_reads_past_the_cap_pull_from_followed_feeds(
    svc: FeedService, store: Store, clock: Clock
) -> None:
    await svc.follow(APP, svc.feed(APP, "timeline", "r"), svc.feed(APP, "user", "a"))
    posted = []
    for i in range(6):
        clock.now += 1
        posted.append(await post(svc, "a", str(i)))
    timeline = svc.feed(APP, "timeline", "r").key
    # Trimming is lazy; drop the oldest entries as a trim to the cap of 3 would.
    await store.remove_entries([timeline], [int(i) for i in posted[:3]])
    assert await stored_ids(store, timeline) == posted[:2:-1]
    assert await timeline_ids(svc, "r", limit=10) == posted[::-1]
    assert await timeline_ids(svc, "r", limit=2) == posted[:3:-1]


async def test_cursor_pages_below_the_kept_entries_pull_too(
    svc: FeedService, store: Store, clock: Clock
) -> None:
    """A page that starts below the cap's oldest kept entry (own entries: none), and one whose own
    entries include a straggler the lazy trim left behind, both come back whole."""
    await svc.follow(APP, svc.feed(APP, "timeline", "r"), svc.feed(APP, "user", "a"))
    posted = []
    for i in range(8):
        clock.now += 1
        posted.append(await post(svc, "a", str(i)))
    timeline = svc.feed(APP, "timeline", "r").key
    # Kept: the 3 newest (the cap) plus a straggler, posted[1], as a lazy trim can leave.
    await store.remove_entries([timeline], [int(posted[i]) for i in (0, 2, 3, 4)])
    assert await stored_ids(store, timeline) == [posted[7], posted[6], posted[5], posted[1]]
    page = await svc.read(
        APP, svc.feed(APP, "timeline", "r"), ReadParams(limit=2, bounds=Bounds(lt=int(posted[4])))
    )
    assert [a["id"] for a in page["results"]] == [posted[3], posted[2]]
    page = await svc.read(
        APP, svc.feed(APP, "timeline", "r"), ReadParams(limit=3, bounds=Bounds(lt=int(posted[6])))
    )
    assert [a["id"] for a in page["results"]] == [posted[5], posted[4], posted[3]]


async def test_follow_copies_into_aggregated_feed_with_group_keys(svc: FeedService, clock: Clock) -> None:
    for i in range(3):
        clock.now += 1
        await post(svc, "a", str(i))
    agg = svc.feed(APP, "agg", "r")
    await svc.follow(APP, agg, svc.feed(APP, "user", "a"), copy_limit=2)
    page = await svc.read(APP, agg, ReadParams())
    assert [(g["verb"], g["activity_count"]) for g in page["results"]] == [("v", 2)]


async def test_large_push_finishes_in_the_background(store: Store, clock: Clock) -> None:
    cfg = FanoutConfig(pull_threshold=100, inline_fanout=2, inactive_after_s=100, follower_count_ttl_s=0)
    svc = FeedService(store, [APP], [FeedGroup("user"), FeedGroup("timeline")], fanout=cfg, clock=clock)
    for fan in ("a", "b", "c"):
        await svc.follow(APP, svc.feed(APP, "timeline", fan), svc.feed(APP, "user", "big"))
    posted = await post(svc, "big", "x")
    assert await stored_ids(store, svc.feed(APP, "user", "big").key) == [posted]  # durable on ack
    await svc.drain()
    for fan in ("a", "b", "c"):
        assert await stored_ids(store, svc.feed(APP, "timeline", fan).key) == [posted]


class FailingNotifier:
    def __init__(self) -> None:
        self.calls = 0

    async def feeds_changed(self, updates: object) -> None:
        self.calls += 1
        raise RuntimeError("bridge down")

    def watched(self, feed_keys: Sequence[str]) -> list[str]:
        return list(feed_keys)


async def test_a_failing_notifier_does_not_fail_the_write(store: Store, clock: Clock) -> None:
    notifier = FailingNotifier()
    svc = FeedService(store, [APP], [FeedGroup("user")], notifier, clock=clock)
    posted = await post(svc, "a", "x")
    assert notifier.calls == 1
    assert await stored_ids(store, svc.feed(APP, "user", "a").key) == [posted]
