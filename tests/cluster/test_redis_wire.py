"""The broker's frame formats (pure): round trips, frame splitting, malformed input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtime.broker import redis_wire as w


@given(st.lists(st.binary(max_size=300), max_size=50), st.integers(min_value=8, max_value=2000))
def test_envelopes_round_trip_in_order_across_frames(payloads: list[bytes], limit: int) -> None:
    frames = w.pack_envelopes(payloads, limit)
    assert [e for f in frames for e in w.unpack_envelopes(f)] == payloads
    for frame in frames:
        # A frame exceeds the limit only when it holds a single oversized envelope.
        assert len(frame) <= limit or len(w.unpack_envelopes(frame)) == 1
    assert (frames == []) == (payloads == [])


def test_one_frame_for_many_small_envelopes() -> None:
    frames = w.pack_envelopes([b"/a\n{}"] * 10_000)
    assert len(frames) == 1
    assert len(w.unpack_envelopes(frames[0])) == 10_000


@pytest.mark.parametrize("frame", [b"M\x00\x00", b"M\x00\x00\x00\x09abc", b"M\xff\xff\xff\xff"])
def test_truncated_frames_are_refused(frame: bytes) -> None:
    with pytest.raises(w.MalformedFrame):
        w.unpack_envelopes(frame)


def test_control_request_and_reply_round_trip() -> None:
    kind, node, body = w.parse_control(w.control(w.DELTA, "n1", b"\x01\x02"))
    assert (kind, node, bytes(body)) == (w.DELTA, "n1", b"\x01\x02")
    assert w.parse_request(w.request(2**63, "node7", b"[{}]")) == (2**63, "node7", b"[{}]")
    assert w.parse_reply(w.reply(5, w.REPLY_FAILED, b"why")) == (5, w.REPLY_FAILED, b"why")
    for bad in (b"J", b"J\x05ab"):
        with pytest.raises(w.MalformedFrame):
            w.parse_control(bad)
    with pytest.raises(w.MalformedFrame):
        w.parse_request(b"Q\x00")
    with pytest.raises(w.MalformedFrame):
        w.parse_reply(b"R")


def test_key_space_names_share_the_prefix() -> None:
    keys = w.KeySpace("app1:")
    names = [keys.members, keys.snapshot("n1"), keys.control, keys.node_channel("n1")]
    assert all(n.startswith("app1:") for n in names)
    assert len(set(names)) == 4
