"""Pure pieces of the feed engine: ids, aggregation formats, ranking, apps and auth."""

from __future__ import annotations

import time
from datetime import datetime

import jwt
import orjson
import pytest

from feeds.activity import TIME_FORMAT, Activity, format_time, parse_time
from feeds.apps import App, parse_app
from feeds.auth import Authenticator
from feeds.config import FeedGroup, render_aggregation
from feeds.errors import ApiKeyError, InputError, NotAllowedError, RankingError, SignatureError
from feeds.ids import IdGenerator, id_time_ms, parse_id, time_to_us, us_to_time
from feeds.ranking import Ranking
from feeds.store.base import Entry

SECRET = "x" * 40
APP = App("1", "key", SECRET)


def test_ids_are_time_ordered_unique_and_positive_63_bit() -> None:
    gen = IdGenerator()
    t = time_to_us(datetime(2030, 1, 1))
    same_ms = [gen.new_id(t) for _ in range(5000)]
    assert len(set(same_ms)) == 5000
    assert all(id_time_ms(i) == t // 1000 for i in same_ms)
    assert gen.new_id(t + 1000) > max(same_ms)
    assert 0 < gen.new_id(time_to_us(datetime(2109, 1, 1))) < 1 << 63
    with pytest.raises(InputError):
        gen.new_id(-1)
    assert parse_id(str(same_ms[0])) == same_ms[0]
    for bad in ("", "-1", "1e3", "9" * 20, "abc"):
        with pytest.raises(InputError):
            parse_id(bad)


def test_times_print_with_microseconds_and_round_trip() -> None:
    for when in (
        datetime(2014, 7, 25, 9, 12, 24),
        datetime(1969, 12, 31, 23, 59, 59, 999999),
        datetime(2109, 1, 1, 0, 0, 0, 1),
    ):
        us = time_to_us(when)
        assert us_to_time(us) == when
        assert format_time(us) == when.strftime(TIME_FORMAT)  # whole seconds keep their ".000000"
        assert parse_time(format_time(us)) == when


def test_times_parse_like_stream() -> None:
    assert parse_time("2014-07-25T09:12:24.735") == datetime(2014, 7, 25, 9, 12, 24, 735000)
    assert parse_time("2014-07-25T11:12:24+02:00") == datetime(2014, 7, 25, 9, 12, 24)
    assert parse_time("2014-07-25T09:12:24Z") == datetime(2014, 7, 25, 9, 12, 24)
    with pytest.raises(InputError):
        parse_time("yesterday")


def test_aggregation_formats() -> None:
    act = Activity(
        actor="user:1",
        verb="like",
        object="post:9",
        time_us=time_to_us(datetime(2025, 3, 1, 10)),
        extra={"kind": "photo"},
    )
    assert render_aggregation("{{ verb.id }}_{{ time.strftime('%Y-%m-%d') }}", act) == "like_2025-03-01"
    assert render_aggregation("{{ actor }}-{{ kind }}-{{ target }}-{{missing}}", act) == "user:1-photo--"
    assert render_aggregation("at {{time}} by {{ actor.id }}!", act) == "at 2025-03-01T10:00:00 by user:1!"
    assert render_aggregation("{{ time.strftime(\"%H\") }}{{ time.strftime('') }}{{}}", act) == "10"
    assert FeedGroup("flat").group_key(act) == ""


def test_ranking_expressions() -> None:
    act = Activity(actor="a", verb="v", object="o", time_us=0, extra={"likes": 9, "flag": True, "s": "x"})
    now = 7200 * 1_000_000
    assert Ranking("likes * 2 + age_h").score(act, now) == 20.0
    assert Ranking("log(likes + 1) - flag - s").score(act, now) == pytest.approx(2.302585, rel=1e-5)
    assert Ranking("likes / 0 + max(1, 2)").score(act, now) == 2.0
    for bad in ("__import__('os')", "likes.real", "[1]", "likes if 1 else 2", "f(x=1)", "1 +"):
        with pytest.raises(RankingError):
            Ranking(bad)


def test_parse_app() -> None:
    assert parse_app("42:key:se:cret") == App("42", "key", "se:cret")
    with pytest.raises(ValueError):
        parse_app("42:key")


def _headers(claims: dict[str, str], secret: str = SECRET) -> dict[str, str]:
    return {"authorization": jwt.encode(claims, secret, algorithm="HS256"), "stream-auth-type": "jwt"}


def test_auth_checks_key_signature_and_scope() -> None:
    auth = Authenticator([APP])
    ok = _headers({"resource": "feed", "action": "read", "feed_id": "user1"})
    assert auth.authenticate({"api_key": "key"}, ok, resource="feed", action="read", feed_id="user1") == APP
    star = _headers({"resource": "*", "action": "*", "feed_id": "*"})
    assert (
        auth.authenticate({"api_key": "key"}, star, resource="feed", action="write", feed_id="user2") == APP
    )
    cases: list[tuple[dict[str, str], dict[str, str], type[Exception]]] = [
        ({}, ok, ApiKeyError),
        ({"api_key": "nope"}, ok, ApiKeyError),
        ({"api_key": "key"}, {"stream-auth-type": "jwt"}, SignatureError),
        ({"api_key": "key"}, _headers({"resource": "feed"}, "y" * 40), SignatureError),
        ({"api_key": "key"}, {**ok, "stream-auth-type": "simple"}, NotAllowedError),
        (
            {"api_key": "key"},
            _headers({"resource": "feed", "action": "write", "feed_id": "user1"}),
            NotAllowedError,
        ),
        (
            {"api_key": "key"},
            _headers({"resource": "feed", "action": "read", "feed_id": "user2"}),
            NotAllowedError,
        ),
        (
            {"api_key": "key"},
            _headers({"resource": "follower", "action": "read", "feed_id": "*"}),
            NotAllowedError,
        ),
    ]
    for query, headers, error in cases:
        with pytest.raises(error):
            auth.authenticate(query, headers, resource="feed", action="read", feed_id="user1")


def test_verified_tokens_are_cached_but_expiry_still_applies() -> None:
    now = [time.time()]
    auth = Authenticator([APP], clock=lambda: now[0])
    claims = {"resource": "*", "action": "*", "feed_id": "*", "exp": int(now[0]) + 60}
    headers = _headers(claims)  # type: ignore[arg-type]
    for _ in range(3):
        assert auth.authenticate({"api_key": "key"}, headers, resource="feed", action="read") == APP
    now[0] += 120  # the cached claims must not outlive the token's exp
    with pytest.raises(SignatureError):
        auth.authenticate({"api_key": "key"}, headers, resource="feed", action="read")


def test_encoded_flat_results_are_the_same_json_as_decoded_ones() -> None:
    from feeds.feed import flat_results

    acts = [
        Activity(actor="a", verb="v", object="o", time_us=1_000_000, id=7, extra={"n": 1, "s": 'q"uo\\te'}),
        Activity(actor="b", verb="v", object="p", time_us=2_000_000, id=8),
    ]
    bodies = {a.id: a.dumps() for a in acts}
    entries = [Entry(8, origin='user:"x"'), Entry(7), Entry(9, origin="user:gone")]  # 9: no body
    plain = flat_results(entries, bodies)
    encoded = orjson.loads(orjson.dumps(flat_results(entries, bodies, encoded=True)))
    assert encoded == plain
    assert [a["origin"] for a in plain] == ['user:"x"', None]
