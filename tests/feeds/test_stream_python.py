"""The official stream-python client against a real server serving feeds.api."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import pytest
import stream
from stream import exceptions


@pytest.fixture
def server(feed_server: Any) -> Any:
    return feed_server


@pytest.fixture
def client(feed_server: Any) -> Any:
    # stream-python keeps the host only when it is literally "localhost" (else it prepends "api.").
    app = feed_server.app
    return stream.connect(
        app.api_key, app.api_secret, app_id=app.app_id, base_url=f"http://localhost:{feed_server.port}"
    )


@pytest.fixture
def notifier(feed_server: Any) -> Any:
    return feed_server.notifier


def uid() -> str:
    return uuid.uuid4().hex[:12]


def ids(response: dict[str, Any]) -> list[str]:
    return [a["id"] for a in response["results"]]


def test_add_and_read_with_cursors(client: Any) -> None:
    feed = client.feed("user", uid())
    first = feed.add_activity({"actor": "bob", "verb": "tweet", "object": "tweet:1", "mood": "happy"})
    assert first["id"].isdigit() and first["actor"] == "bob" and first["mood"] == "happy"
    added = feed.add_activities(
        [{"actor": "bob", "verb": "tweet", "object": f"tweet:{i}"} for i in range(2, 6)]
    )
    all_ids = [a["id"] for a in reversed(added["activities"])] + [first["id"]]
    page = feed.get(limit=10)
    assert ids(page) == all_ids
    assert isinstance(page["results"][0]["time"], datetime)  # the client parsed our time format
    assert ids(feed.get(limit=2, offset=1)) == all_ids[1:3]
    assert ids(feed.get(limit=10, id_lt=all_ids[1])) == all_ids[2:]
    assert ids(feed.get(limit=10, id_lte=all_ids[1])) == all_ids[1:]
    assert ids(feed.get(limit=10, id_gt=all_ids[3])) == all_ids[:3]
    assert ids(feed.get(limit=10, id_gte=all_ids[3])) == all_ids[:4]
    assert feed.get(limit=2)["next"].endswith(f"id_lt={all_ids[1]}&limit=2")
    assert ids(feed.get(limit=2, enrich=True)) == all_ids[:2]
    assert ids(client.get_activities(ids=all_ids[:2], enrich=True)) == all_ids[:2]


def test_foreign_id_time_is_idempotent_and_queryable(client: Any) -> None:
    feed = client.feed("user", uid())
    act = {"actor": "a", "verb": "v", "object": "o", "foreign_id": "post:1", "time": datetime(2024, 5, 1, 12)}
    one, two = feed.add_activity(act), feed.add_activity(act)
    assert one["id"] == two["id"]
    assert len(feed.get()["results"]) == 1
    got = client.get_activities(foreign_id_times=[("post:1", datetime(2024, 5, 1, 12))])
    assert ids(got) == [one["id"]]
    assert ids(client.get_activities(ids=[one["id"]])) == [one["id"]]


def test_follow_copy_limit_fanout_and_unfollow(client: Any, notifier: Any, server: Any) -> None:
    author, reader, keeper = uid(), uid(), uid()
    user = client.feed("user", author)
    old = [user.add_activity({"actor": author, "verb": "post", "object": f"o:{i}"})["id"] for i in range(3)]
    timeline = client.feed("timeline", reader)
    timeline.follow("user", author, activity_copy_limit=2)
    assert ids(timeline.get()) == [old[2], old[1]]
    assert timeline.get()["results"][0]["origin"] == f"user:{author}"
    new = user.add_activity({"actor": author, "verb": "post", "object": "o:new"})
    assert ids(timeline.get())[0] == new["id"]
    pushed = [u for u in notifier.updates if u.feed_id == f"timeline:{reader}"]
    assert [a["id"] for a in pushed[-1].new] == [new["id"]]
    assert pushed[-1].message()["feed"] == f"timeline:{reader}" and pushed[-1].app_id == server.app.app_id

    client.feed("timeline", keeper).follow("user", author)
    client.feed("timeline", keeper).unfollow("user", author, keep_history=True)
    assert len(client.feed("timeline", keeper).get()["results"]) == 4
    timeline.unfollow("user", author)
    assert timeline.get()["results"] == []


def test_followers_following_follow_many_and_stats(client: Any) -> None:
    target, a, b = uid(), uid(), uid()
    client.follow_many(
        [
            {"source": f"timeline:{a}", "target": f"user:{target}"},
            {"source": f"timeline:{b}", "target": f"user:{target}"},
        ],
        activity_copy_limit=0,
    )
    followers = client.feed("user", target).followers()["results"]
    assert {f["feed_id"] for f in followers} == {f"timeline:{a}", f"timeline:{b}"}
    assert all(f["target_id"] == f"user:{target}" for f in followers)
    following = client.feed("timeline", a).following()["results"]
    assert [f["target_id"] for f in following] == [f"user:{target}"]
    assert client.feed("timeline", a).following(feeds=["user:nobody"])["results"] == []
    stats = client.follow_stats(f"user:{target}")["results"]
    assert stats["followers"]["count"] == 2 and stats["following"]["count"] == 0
    client.unfollow_many([{"source": f"timeline:{a}", "target": f"user:{target}"}])
    assert [f["feed_id"] for f in client.feed("user", target).followers()["results"]] == [f"timeline:{b}"]


def test_large_author_is_pulled_at_read_time(client: Any) -> None:
    star = uid()
    fans = [uid() for _ in range(5)]  # pull_threshold is 3 in this module's server
    client.follow_many([{"source": f"timeline:{f}", "target": f"user:{star}"} for f in fans])
    posted = client.feed("user", star).add_activity({"actor": star, "verb": "post", "object": "hit"})
    own = client.feed("timeline", fans[0]).add_activity({"actor": fans[0], "verb": "note", "object": "n"})
    page = client.feed("timeline", fans[0]).get(limit=5)
    assert ids(page) == [own["id"], posted["id"]]
    assert page["results"][1]["origin"] == f"user:{star}"


def test_remove_by_id_and_foreign_id(client: Any, notifier: Any) -> None:
    author, reader = uid(), uid()
    client.feed("timeline", reader).follow("user", author)
    user = client.feed("user", author)
    a = user.add_activity({"actor": "x", "verb": "v", "object": "1"})
    b = user.add_activity({"actor": "x", "verb": "v", "object": "2", "foreign_id": "fid:2"})
    assert user.remove_activity(a["id"])["removed"] == a["id"]
    user.remove_activity(foreign_id="fid:2")
    assert user.get()["results"] == []
    assert client.feed("timeline", reader).get()["results"] == []
    last = [u for u in notifier.updates if u.feed_id == f"timeline:{reader}"][-1]
    assert last.deleted == [b["id"]] and last.deleted_foreign_ids[0][0] == "fid:2"


def test_to_targets(client: Any) -> None:
    author, other = uid(), uid()
    act = client.feed("user", author).add_activity(
        {"actor": author, "verb": "mention", "object": "m:1", "to": [f"notification:{other}"]}
    )
    groups = client.feed("notification", other).get()["results"]
    assert groups[0]["activities"][0]["id"] == act["id"]


def test_update_activity_to_targets(client: Any, notifier: Any) -> None:
    author, a, b = uid(), uid(), uid()
    user = client.feed("user", author)
    when = datetime(2025, 6, 1, 8)
    act = user.add_activity(
        {"actor": author, "verb": "v", "object": "o", "foreign_id": "tt:1", "time": when, "to": [f"user:{a}"]}
    )
    user.update_activity_to_targets("tt:1", when, added_targets=[f"user:{b}"], removed_targets=[f"user:{a}"])
    assert client.feed("user", a).get()["results"] == []
    assert ids(client.feed("user", b).get()) == [act["id"]]
    (body,) = client.get_activities(ids=[act["id"]])["results"]
    assert body["to"] == [f"user:{b}"]
    user.update_activity_to_targets("tt:1", when, new_targets=[f"user:{a}"])
    assert ids(client.feed("user", a).get()) == [act["id"]]
    assert client.feed("user", b).get()["results"] == []
    assert [u.deleted for u in notifier.updates if u.feed_id == f"user:{b}"][-1] == [act["id"]]


def test_update_and_partial_update(client: Any) -> None:
    feed = client.feed("user", uid())
    when = datetime(2025, 1, 2, 3, 4, 5)
    act = feed.add_activity(
        {"actor": "a", "verb": "v", "object": "o", "foreign_id": "u:1", "time": when, "n": 1}
    )
    client.update_activity(
        {"actor": "a", "verb": "v", "object": "o2", "foreign_id": "u:1", "time": when, "n": 2}
    )
    (body,) = client.get_activities(ids=[act["id"]])["results"]
    assert body["object"] == "o2" and body["n"] == 2
    updated = client.activity_partial_update(id=act["id"], set={"n": 3, "meta.k": "v"}, unset=["mood"])
    assert updated["activities"][0]["n"] == 3
    (body,) = feed.get()["results"]
    assert body["meta"] == {"k": "v"} and body["n"] == 3 and body["object"] == "o2" and "mood" not in body
    client.activity_partial_update(foreign_id="u:1", time=when, set={"n": 4})
    assert feed.get()["results"][0]["n"] == 4


def test_aggregated_and_notification_feeds(client: Any, notifier: Any) -> None:
    owner = uid()
    agg, notif = client.feed("aggregated", owner), client.feed("notification", owner)
    for feed in (agg, notif):
        feed.add_activities(
            [
                {"actor": "ann", "verb": "like", "object": "p:1", "time": datetime(2025, 3, 1, 10)},
                {"actor": "ben", "verb": "like", "object": "p:2", "time": datetime(2025, 3, 1, 11)},
                {"actor": "ann", "verb": "comment", "object": "p:1", "time": datetime(2025, 3, 1, 12)},
            ]
        )
    groups = agg.get()["results"]
    assert [g["verb"] for g in groups] == ["comment", "like"]
    like = groups[1]
    assert like["activity_count"] == 2 and like["actor_count"] == 2 and like["group"] == "like_2025-03-01"
    assert like["created_at"] < like["updated_at"]
    first = notif.get(mark_seen=True)
    assert first["unseen"] == 2 and first["unread"] == 2 and not first["results"][0]["is_seen"]
    second = notif.get(mark_read=[first["results"][0]["id"]])
    assert second["unseen"] == 0 and second["unread"] == 2 and second["results"][0]["is_seen"]
    assert notif.get()["unread"] == 1
    marks = [u for u in notifier.updates if u.feed_id == f"notification:{owner}" and u.mark_seen is not None]
    assert marks[-1].message()["mark_seen"] == "all"
    read_marks = [
        u for u in notifier.updates if u.feed_id == f"notification:{owner}" and u.mark_read is not None
    ]
    assert read_marks[-1].message()["mark_read"] == [first["results"][0]["id"]]


def test_ranking(client: Any) -> None:
    feed = client.feed("ranked", uid())
    feed.add_activities(
        [{"actor": "a", "verb": "v", "object": str(i), "likes": likes} for i, likes in enumerate([5, 50, 1])]
    )
    assert [a["likes"] for a in feed.get(ranking="popular")["results"]] == [50, 5, 1]
    with pytest.raises(exceptions.RankingException):
        feed.get(ranking="nope")


def test_errors_in_stream_shape(client: Any, server: Any) -> None:
    base = f"http://localhost:{server.port}"
    wrong_secret = stream.connect(
        server.app.api_key,
        "not-the-secret-but-long-enough-for-hs256-keys",
        app_id=server.app.app_id,
        base_url=base,
    )
    with pytest.raises(exceptions.SignatureException) as sig:
        wrong_secret.feed("user", "1").get()
    assert sig.value.status_code == 401
    with pytest.raises(exceptions.ApiKeyException):
        stream.connect("nokey", server.app.api_secret, app_id=server.app.app_id, base_url=base).feed(
            "user", "1"
        ).get()
    with pytest.raises(exceptions.FeedConfigException):
        client.feed("nosuchgroup", "1").get()
    with pytest.raises(exceptions.InputException):
        client.feed("user", "1").add_activity({"verb": "no-actor", "object": "o"})
    with pytest.raises(exceptions.DoesNotExistException):
        client.activity_partial_update(id="12345", set={"a": 1})


def test_token_scope_is_enforced(server: Any) -> None:
    import jwt
    import requests

    token = jwt.encode(
        {"resource": "feed", "action": "read", "feed_id": "user1"}, server.app.api_secret, algorithm="HS256"
    )
    url = f"http://localhost:{server.port}/api/v1.0/feed/user/2/?api_key={server.app.api_key}"
    reply = requests.get(url, headers={"Authorization": token, "stream-auth-type": "jwt"}, timeout=5)
    assert reply.status_code == 403
    body = reply.json()
    assert body["exception"] == "NotAllowedException" and body["code"] == 17 and body["status_code"] == 403
    assert body["detail"] and body["duration"].endswith("ms")


def test_aggregated_paging_with_id_lt_and_next(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from urllib.parse import parse_qs, urlsplit

    from feeds import reads

    monkeypatch.setattr(reads, "AGGREGATION_WINDOW", 6)  # the server runs in this process
    owner = uid()
    notif = client.feed("notification", owner)
    verbs = [v for v in ("like", "follow", "comment", "share", "tag", "pin") for _ in range(4)]
    notif.add_activities(
        [
            {"actor": "ann", "verb": v, "object": str(i), "time": datetime(2025, 4, 1, 10, i)}
            for i, v in enumerate(verbs)
        ]
    )
    first = notif.get(limit=2)
    assert [g["verb"] for g in first["results"]] == ["pin", "tag"]
    head = first["results"][0]
    assert head["id"] == f"{head['activities'][0]['id']}.{head['group']}"
    seen, params = [], {"limit": 2}
    while True:
        page = notif.get(**params)
        seen += [g["verb"] for g in page["results"]]
        if not page["next"]:
            break
        params = {k: v[0] for k, v in parse_qs(urlsplit(page["next"]).query).items()}
    assert seen == ["pin", "tag", "share", "comment", "follow", "like"]
    by_cursor = notif.get(limit=3, id_lt=first["results"][1]["id"])
    # The 6-entry window below the cursor holds the rest of "tag" and "share": a short page, and next.
    assert [g["verb"] for g in by_cursor["results"]] == ["share"] and by_cursor["next"]
    agg = client.feed("aggregated", owner)
    agg.add_activities([{"actor": "bob", "verb": v, "object": "o"} for v in ("a", "b", "c")])
    top = agg.get(limit=2)["results"]
    assert top[0]["id"] == top[0]["activities"][0]["id"]  # aggregated: the newest activity's id
    assert [g["verb"] for g in agg.get(limit=2, id_lt=top[1]["id"])["results"]] == ["a"]


def test_update_reaches_tag_filter_and_aggregation(client: Any, notifier: Any) -> None:
    author, reader = uid(), uid()
    client.feed("timeline", reader).follow("user", author)
    when = datetime(2025, 5, 1, 9)
    act = client.feed("user", author).add_activity(
        {"actor": author, "verb": "post", "object": "o", "foreign_id": "t:1", "time": when, "tags": ["a"]}
    )
    client.update_activity(
        {"actor": author, "verb": "post", "object": "o", "foreign_id": "t:1", "time": when, "tags": ["b"]}
    )
    assert client.feed("timeline", reader).get(tag="a")["results"] == []
    assert ids(client.feed("timeline", reader).get(tag="b")) == [act["id"]]
    last = [u for u in notifier.updates if u.feed_id == f"timeline:{reader}"][-1]
    assert last.new[0]["id"] == act["id"] and last.new[0]["tags"] == ["b"]
    client.activity_partial_update(id=act["id"], set={"tags": ["c"]})
    assert ids(client.feed("user", author).get(tag="c")) == [act["id"]]
