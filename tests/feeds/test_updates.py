"""Activity updates reach the denormalised timeline columns (tags, group keys) of every feed holding
the activity, and each of those feeds gets a realtime message; on every store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from feeds.apps import App
from feeds.config import FanoutConfig, FeedGroup
from feeds.reads import ReadParams
from feeds.service import FeedService
from feeds.store.base import Store
from tests.feeds.conftest import RecordingNotifier

APP = App("9", "k", "s" * 40)
T0 = 1_750_000_000.0
WHEN = "2025-06-01T08:00:00"


@pytest.fixture
async def svc(store: Store) -> AsyncIterator[FeedService]:
    groups = [
        FeedGroup("user"),
        FeedGroup("timeline"),
        FeedGroup("agg", "aggregated", aggregation_format="{{ kind }}"),
    ]
    service = FeedService(
        store, [APP], groups, RecordingNotifier(), fanout=FanoutConfig(pull_threshold=10), clock=lambda: T0
    )
    yield service


def notifier(svc: FeedService) -> RecordingNotifier:
    assert isinstance(svc.notifier, RecordingNotifier)
    return svc.notifier


async def read(svc: FeedService, group: str, user: str, **kw: object) -> list[dict[str, object]]:
    page = await svc.read(APP, svc.feed(APP, group, user), ReadParams(**kw))  # type: ignore[arg-type]
    return list(page["results"])


async def test_update_refreshes_tags_and_group_keys_everywhere(svc: FeedService) -> None:
    await svc.follow(APP, svc.feed(APP, "timeline", "fan"), svc.feed(APP, "user", "a"))
    await svc.follow(APP, svc.feed(APP, "agg", "fan"), svc.feed(APP, "user", "a"))
    base = {"actor": "a", "verb": "post", "foreign_id": "p:1", "time": WHEN, "to": ["agg:boss"]}
    (act,) = await svc.add_activities(
        APP, svc.feed(APP, "user", "a"), [{**base, "object": "o", "tags": ["red"], "kind": "x"}]
    )
    await svc.add_activities(
        APP, svc.feed(APP, "agg", "fan"), [{"actor": "b", "verb": "post", "object": "o2", "kind": "y"}]
    )
    assert [a["id"] for a in await read(svc, "timeline", "fan", tag="red")] == [act["id"]]
    assert [g["group"] for g in await read(svc, "agg", "fan")] == ["y", "x"]
    notifier(svc).updates.clear()

    await svc.update_activities(APP, [{**base, "object": "o", "tags": ["blue"], "kind": "y"}])
    for feed in ("user", "timeline"):
        assert await read(svc, feed, "a" if feed == "user" else "fan", tag="red") == []
        got = await read(svc, feed, "a" if feed == "user" else "fan", tag="blue")
        assert [a["id"] for a in got] == [act["id"]]
    (joined,) = await read(svc, "agg", "fan")  # now one group: the activity moved to group "y"
    assert joined["group"] == "y" and joined["activity_count"] == 2
    assert [g["group"] for g in await read(svc, "agg", "boss")] == ["y"]  # the `to` target too
    sent = {u.feed_id: u for u in notifier(svc).updates}
    assert set(sent) == {"user:a", "timeline:fan", "agg:fan", "agg:boss"}
    assert all(u.new[0]["id"] == act["id"] and u.new[0]["tags"] == ["blue"] for u in sent.values())
    assert sent["timeline:fan"].new[0]["origin"] == "user:a" and sent["user:a"].new[0]["origin"] is None

    notifier(svc).updates.clear()
    await svc.partial_update(APP, [{"id": act["id"], "set": {"tags": ["green"], "kind": "z"}}])
    assert [a["id"] for a in await read(svc, "timeline", "fan", tag="green")] == [act["id"]]
    assert await read(svc, "timeline", "fan", tag="blue") == []
    assert [g["group"] for g in await read(svc, "agg", "fan")] == ["y", "z"]
    assert {u.feed_id for u in notifier(svc).updates} == {"user:a", "timeline:fan", "agg:fan", "agg:boss"}


async def test_update_keeps_seen_flags_and_rejects_bad_tags(svc: FeedService) -> None:
    from feeds.errors import InputError

    base = {"actor": "a", "verb": "post", "object": "o", "foreign_id": "p:2", "time": WHEN, "kind": "x"}
    await svc.add_activities(APP, svc.feed(APP, "agg", "n"), [base])
    with pytest.raises(InputError):
        await svc.update_activities(APP, [{**base, "tags": "not-a-list"}])
    with pytest.raises(InputError):
        await svc.partial_update(APP, [{"foreign_id": "p:2", "time": WHEN, "set": {"tags": [1]}}])
    ref = svc.feed(APP, "agg", "n")
    await svc.store.mark(ref.key, None, seen=True, read=False)
    await svc.update_activities(APP, [{**base, "tags": ["t"]}])
    (entry,) = await svc.store.read_entries(ref.key, limit=5)
    assert entry.seen and entry.tags == ("t",) and entry.group_key == "x"
