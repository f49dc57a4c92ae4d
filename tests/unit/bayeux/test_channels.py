from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtime.bayeux import channels as ch

INVALID = [
    "foo",
    "/",
    "/foo/",
    "/foo//bar",
    "/foo/*/bar",
    "/foo/***",
    "/foo/*x",
    "/**/foo",
    "/foo bar",
    "/a.b",
    "/a:b",
    "/a%20",
    "/a+b",
    "/a#b",
    "/café",
    "/a\n",
    "",
    "//",
    "/" + "a" * 2000,
]


@pytest.mark.parametrize("name", INVALID)
def test_invalid_channels_are_neither_names_nor_patterns(name: str) -> None:
    assert not ch.is_valid(name)


@pytest.mark.parametrize("name", ["/a", "/a/b-c_d!~()$@", "/__proto__", "/constructor", "/0/1/2"])
def test_names(name: str) -> None:
    assert ch.is_valid_name(name) and not ch.is_valid_pattern(name)


@pytest.mark.parametrize("pattern", ["/*", "/**", "/a/*", "/a/b/**"])
def test_patterns(pattern: str) -> None:
    assert ch.is_valid_pattern(pattern) and not ch.is_valid_name(pattern)


def test_non_strings_are_invalid() -> None:
    for value in (None, 1, ["/a"], {"a": 1}):
        assert not ch.is_valid(value)


def test_expand_lists_every_matching_key() -> None:
    assert sorted(ch.expand("/a/b/c")) == sorted(["/**", "/a/b/c", "/a/b/*", "/a/**", "/a/b/**"])
    assert sorted(ch.expand("/a")) == sorted(["/**", "/a", "/*"])


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("/a/*", "/a/x", True),
        ("/a/*", "/a/x/y", False),
        ("/a/*", "/a", False),
        ("/a/**", "/a/x/y/z", True),
        ("/a/**", "/a", False),
        ("/a/**", "/ab/c", False),
        ("/*", "/a", True),
        ("/*", "/a/b", False),
        ("/**", "/a/b", True),
        ("/a/b", "/a/b", True),
        ("/a/b", "/a/c", False),
    ],
)
def test_matches(pattern: str, name: str, expected: bool) -> None:
    assert ch.matches(pattern, name) is expected


def test_classification() -> None:
    assert ch.is_meta("/meta/connect") and ch.is_meta("/meta/foo/bar") and not ch.is_meta("/metadata")
    assert ch.is_service("/service/x") and not ch.is_service("/services")
    assert not ch.is_subscribable("/service/**") and ch.is_subscribable("/a/**")


segment = st.text(alphabet="abc-_", min_size=1, max_size=3)
names = st.lists(segment, min_size=1, max_size=5).map(lambda segs: "/" + "/".join(segs))
patterns = st.one_of(
    names,
    st.lists(segment, max_size=4).map(lambda segs: "".join("/" + s for s in segs) + "/*"),
    st.lists(segment, max_size=4).map(lambda segs: "".join("/" + s for s in segs) + "/**"),
)


@given(pattern=patterns, name=names)
def test_expand_agrees_with_matches(pattern: str, name: str) -> None:
    """Routing by expand() must reach exactly the subscriptions that match."""
    assert (pattern in ch.expand(name)) == ch.matches(pattern, name)
