from __future__ import annotations

import pytest

from realtime.bayeux import codec
from realtime.bayeux.errors import BadRequest


def test_object_is_a_batch_of_one_and_null_is_empty() -> None:
    assert codec.decode_batch(b'{"channel":"/a"}', 10) == [{"channel": "/a"}]
    assert codec.decode_batch(b"null", 10) == []
    assert codec.decode_batch(b"[]", 10) == []


@pytest.mark.parametrize("raw", [b"", b"{", b'"x"', b"42", b"true", b"[1]", b'[{"a":1}, "x"]', b"\xff"])
def test_garbage_is_a_bad_request(raw: bytes) -> None:
    with pytest.raises(BadRequest):
        codec.decode_batch(raw, 10)


def test_batch_limit() -> None:
    codec.decode_batch(b"[{},{}]", 2)
    with pytest.raises(BadRequest, match="exceeds"):
        codec.decode_batch(b"[{},{},{}]", 2)


def test_form_message() -> None:
    assert codec.form_message(b"message=%7B%22a%22%3A1%7D&x=1") == '{"a":1}'
    with pytest.raises(BadRequest):
        codec.form_message(b"other=1")
    with pytest.raises(BadRequest):
        codec.form_message(b"\xff\xfe")


@pytest.mark.parametrize("name", ["cb", "__jsonp1__", "$a.b_c", "jsonpcallback", "a.b.c"])
def test_valid_callbacks(name: str) -> None:
    assert codec.is_valid_callback(name)


@pytest.mark.parametrize("name", ["", "1a", "a-b", "a()", "alert(1)//", "a..b", "a.", "x" * 200, "a b"])
def test_invalid_callbacks(name: str) -> None:
    assert not codec.is_valid_callback(name)


def test_jsonp_escapes_line_separators() -> None:
    body = codec.jsonp_body("cb", codec.encode(["a\u2028b\u2029"]))
    assert body == b'/**/cb(["a\\u2028b\\u2029"]);'


def test_join() -> None:
    assert codec.join([b"{}", b"[1]"]) == b"[{},[1]]"
    assert codec.join([]) == b"[]"
