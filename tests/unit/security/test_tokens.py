from __future__ import annotations

import time

import jwt
import pytest

from feeds.apps import App
from realtime.security.tokens import AppRegistry, TokenError

SA = "secret-a" * 4
SB = "secret-b" * 4
A = App("1", "key-a", SA)
B = App("2", "key-b", SB)
REG = AppRegistry([A, B])


def sign(claims: dict[str, object], secret: str = SA) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def test_user_token_with_api_key() -> None:
    who = REG.verify(sign({"user_id": "42"}), "key-a")
    assert who.user_id == "42" and not who.server and who.app_id == "1"


def test_server_and_feed_tokens() -> None:
    assert REG.verify(sign({"resource": "*", "action": "*", "feed_id": "*"}), "key-a").server
    who = REG.verify(sign({"resource": "feed", "action": "read", "feed_id": "user42"}), "key-a")
    assert who.feeds == {"user42"} and not who.server
    assert (
        REG.verify(sign({"resource": "feed", "action": "write", "feed_id": "user42"}), "key-a").feeds == set()
    )


def test_app_named_in_the_token() -> None:
    assert REG.verify(sign({"user_id": "7", "api_key": "key-b"}, SB)).app_id == "2"


@pytest.mark.parametrize(
    ("token", "api_key", "reason"),
    [
        (sign({"user_id": "1"}, "wrong" * 8), "key-a", "invalid"),
        (sign({"user_id": "1"}), "key-b", "invalid"),  # signed by A, presented as B
        (sign({"user_id": "1", "exp": int(time.time()) - 10}), "key-a", "expired"),
        (sign({"user_id": "1"}), "nope", "unknown api_key"),
        ("not.a.jwt", "key-a", "invalid"),
        ("garbage", None, "malformed"),
        (sign({"user_id": "1"}), None, "no known app"),  # two apps and no hint
        (42, "key-a", "no token"),
        (jwt.encode({"user_id": "1"}, SA * 2, algorithm="HS512"), "key-a", "invalid"),
    ],
)
def test_refused(token: object, api_key: object, reason: str) -> None:
    with pytest.raises(TokenError, match=reason):
        REG.verify(token, api_key)


def test_alg_none_is_refused() -> None:
    unsigned = jwt.encode({"user_id": "1", "resource": "*", "action": "*"}, key=None, algorithm="none")
    with pytest.raises(TokenError):
        REG.verify(unsigned, "key-a")
