"""The feed API's query-string parser agrees with the standard library's on any input."""

from __future__ import annotations

from urllib.parse import parse_qsl

from hypothesis import given
from hypothesis import strategies as st

from feeds.http import parse_query

# the separators and escapes that matter, a few characters around them, and anything else
_CHARS = st.one_of(st.sampled_from("&=%+;2Fafz0 é"), st.characters())


@given(st.text(_CHARS, max_size=40))
def test_parse_query_is_dict_of_parse_qsl(raw: str) -> None:
    assert parse_query(raw) == dict(parse_qsl(raw, keep_blank_values=True))


def test_stream_client_queries() -> None:
    raw = "api_key=k&limit=25&id_lt=1a2b&ranking=popular&foreign_ids=a%2Cb&q=x+y&flag&limit=5"
    assert parse_query(raw) == {
        "api_key": "k",
        "limit": "5",  # the last of a repeated name wins, as with dict(parse_qsl(...))
        "id_lt": "1a2b",
        "ranking": "popular",
        "foreign_ids": "a,b",
        "q": "x y",
        "flag": "",
    }
