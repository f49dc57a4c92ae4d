"""Error strings and their precedence are wire contract: Faye clients parse them."""

from __future__ import annotations

from realtime.bayeux import validation as v

TYPES = ("long-polling", "websocket")


def test_handshake_errors_last_check_wins() -> None:
    assert v.check_handshake({"version": "1.0", "supportedConnectionTypes": ["websocket"]}, TYPES) is None
    assert (
        v.check_handshake({"supportedConnectionTypes": ["websocket"]}, TYPES)
        == "402:version:Missing required parameter"
    )
    assert v.check_handshake({"version": "1.0", "supportedConnectionTypes": ["foo", "bar"]}, TYPES) == (
        "301:foo,bar:Connection types not supported"
    )
    assert v.check_handshake({}, TYPES) == "402:supportedConnectionTypes:Missing required parameter"


def test_connect_errors_last_check_wins() -> None:
    ok = {"clientId": "abc", "connectionType": "websocket"}
    assert v.check_connect(ok, True, TYPES) is None
    assert v.check_connect(ok, False, TYPES) == "401:abc:Unknown client"
    assert (
        v.check_connect({"connectionType": "websocket"}, False, TYPES)
        == "402:clientId:Missing required parameter"
    )
    assert v.check_connect({"clientId": "abc", "connectionType": "smoke"}, True, TYPES) == (
        "301:smoke:Connection types not supported"
    )
    assert (
        v.check_connect({"clientId": "abc"}, False, TYPES) == "402:connectionType:Missing required parameter"
    )


def test_channel_field() -> None:
    assert v.check_channel_field({"channel": "/meta/connect"}) is None
    assert (
        v.check_channel_field({"channel": "/meta/subscribe/x"}) == "403:/meta/subscribe/x:Forbidden channel"
    )
    assert v.check_channel_field({"channel": "/meta/*"}) == "403:/meta/*:Forbidden channel"
    assert v.check_channel_field({}) == "405::Invalid channel"
    assert v.check_channel_field({"channel": 5}) == "405:5:Invalid channel"


def test_subscription_channels() -> None:
    assert v.check_subscription_channels(["/a", "/b/**"], allow_service=False) is None
    assert (
        v.check_subscription_channels(["/a", "/b/*/c"], allow_service=False) == "405:/b/*/c:Invalid channel"
    )
    assert (
        v.check_subscription_channels(["/meta/connect"], allow_service=True)
        == "403:/meta/connect:Forbidden channel"
    )
    assert (
        v.check_subscription_channels(["/service/x"], allow_service=False)
        == "403:/service/x:Forbidden channel"
    )
    assert v.check_subscription_channels(["/service/x"], allow_service=True) is None
    assert v.check_subscription_channels([{"a": 1}], allow_service=False) == "405:{'a': 1}:Invalid channel"


def test_subscriptions_shape() -> None:
    assert v.subscriptions({"subscription": "/a"}) == ["/a"]
    assert v.subscriptions({"subscription": ["/a", "/b"]}) == ["/a", "/b"]
    assert v.subscriptions({}) is None and v.subscriptions({"subscription": []}) is None


def test_publish() -> None:
    assert v.check_publish({"channel": "/a", "data": None}) is None
    assert v.check_publish({"channel": "/a/*", "data": 1}) == "405:/a/*:Invalid channel"
    assert v.check_publish({"channel": "/a"}) == "402:data:Missing required parameter"
