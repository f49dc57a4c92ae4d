from __future__ import annotations

import pytest

from realtime.security.policy import ANONYMOUS, Access, ChannelPolicy, Identity, Rule

POLICY = ChannelPolicy(
    [
        Rule("/users/{user}/**", Access.OWNER, Access.SERVER),
        Rule("/site-{app}-feed-{feed}", Access.FEED, Access.SERVER),
        Rule("/members/**", Access.USER, Access.USER),
        Rule("/admin/*", Access.SERVER, Access.SERVER),
    ]
)
U42 = Identity(user_id="42")
SERVER = Identity(server=True)


@pytest.mark.parametrize(
    ("who", "channel", "subscribe", "publish"),
    [
        (ANONYMOUS, "/chat/a", True, True),
        (ANONYMOUS, "/users/42/inbox", False, False),
        (U42, "/users/42/inbox", True, False),
        (U42, "/users/43/inbox", False, False),
        (ANONYMOUS, "/members/x", False, False),
        (U42, "/members/x/y", True, True),
        (U42, "/admin/x", False, False),
        (SERVER, "/admin/x", True, True),
        (Identity(feeds=frozenset({"user42"})), "/site-7-feed-user42", True, False),
        (Identity(feeds=frozenset({"user42"})), "/site-7-feed-user43", False, False),
        (Identity(channels=frozenset({"/admin/x"})), "/admin/x", True, False),
    ],
)
def test_access(who: Identity, channel: str, subscribe: bool, publish: bool) -> None:
    assert POLICY.may_subscribe(who, channel) is subscribe
    assert POLICY.may_publish(who, channel) is publish


def test_public_channels_route_as_faye_and_protected_ones_only_through_privileged_wildcards() -> None:
    assert sorted(POLICY.routing_keys("/chat/a")) == sorted(["/**", "/chat/a", "/chat/**", "/chat/*"])
    assert sorted(POLICY.routing_keys("/users/42/inbox")) == sorted(
        ["!/**", "/users/42/inbox", "!/users/**", "!/users/42/**", "!/users/42/*"]
    )


@pytest.mark.parametrize(
    ("who", "pattern", "privileged"),
    [
        (U42, "/**", False),
        (U42, "/users/**", False),
        (U42, "/users/*", False),
        (U42, "/users/42/**", True),
        (U42, "/users/43/**", False),
        (U42, "/chat/**", True),  # no protected channel under it
        (U42, "/members/**", True),
        (ANONYMOUS, "/members/**", False),
        (U42, "/admin/*", False),
        (SERVER, "/**", True),
        (Identity(feeds=frozenset({"user42"})), "/*", False),
    ],
)
def test_wildcard_privilege(who: Identity, pattern: str, privileged: bool) -> None:
    assert POLICY.wildcard_privileged(who, pattern) is privileged


def test_from_config_and_bad_access() -> None:
    policy = ChannelPolicy.from_config([{"pattern": "/p/**", "subscribe": "user"}])
    assert policy.may_publish(ANONYMOUS, "/p/x") and not policy.may_subscribe(ANONYMOUS, "/p/x")
    with pytest.raises(ValueError):
        ChannelPolicy.from_config([{"pattern": "/p/**", "subscribe": "everyone"}])


def test_a_user_token_reads_the_users_own_feeds_of_known_groups_only() -> None:
    rules = [Rule("/site-{app}-feed-{feed}", Access.FEED, Access.SERVER)]
    policy = ChannelPolicy(rules, ["user", "timeline"])
    bob, ob = Identity(user_id="bob"), Identity(user_id="ob")
    assert policy.may_subscribe(bob, "/site-1-feed-userbob")
    assert policy.may_subscribe(bob, "/site-1-feed-timelinebob")
    assert not policy.may_subscribe(ob, "/site-1-feed-userbob"), "'userb' is no group: ob may not read it"
    assert not policy.may_subscribe(bob, "/site-1-feed-otherbob")
