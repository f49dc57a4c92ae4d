"""Byte formats the Redis broker puts on pub/sub channels (pure, no I/O).

Two kinds of channel carry them (names in ``KeySpace``):

* the **control channel**, shared by the cluster: ``<kind><len><node id><body>`` where kind is
  ``J`` (a node (re)joined: load its snapshot key), ``L`` (it left: drop it now) or ``D`` (body is
  a filter delta from ``CuckooFilter.take_delta``);
* one **node channel** per node, read only by that node:

  - ``M`` + repeated ``<u32 length><envelope>``: engine payloads, in publish order. Everything a
    publisher routes to one node in one tick travels as one frame (a feed fan-out to 10k
    channels is one message per node, not 10k);
  - ``Q`` + ``<u64 correlation id><u8 len><requester node id><payload>``: a forwarded request;
  - ``R`` + ``<u64 correlation id><u8 status><payload>``: its answer, on the requester's channel.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from realtime.routing import wire as filter_wire

JOIN = 0x4A  # b"J"
LEAVE = 0x4C  # b"L"
DELTA = 0x44  # b"D"
DELIVER = 0x4D  # b"M"
REQUEST = 0x51  # b"Q"
REPLY = 0x52  # b"R"

REPLY_OK = 0
REPLY_FAILED = 1  # the serving node had no serve callback or it raised

MAX_FRAME_BYTES = 1 << 20  # envelopes beyond this start a new frame (one alone may exceed it)

_LEN = struct.Struct(">I")
_REQ = struct.Struct(">QB")
_REP = struct.Struct(">QB")


class MalformedFrame(ValueError):
    """Bytes on a broker channel that this version cannot read."""


@dataclass(frozen=True, slots=True)
class KeySpace:
    """Redis key and channel names of one deployment, all under ``prefix``."""

    prefix: str = "rt:"

    @property
    def members(self) -> str:
        """A set of node ids that announced themselves (dead ones are pruned by survivors)."""
        return self.prefix + "nodes"

    def snapshot(self, node_id: str) -> str:
        """A node's filter snapshot; its TTL is the node's heartbeat."""
        return f"{self.prefix}node:{node_id}"

    @property
    def control(self) -> str:
        return self.prefix + "ctl"

    def node_channel(self, node_id: str) -> str:
        return f"{self.prefix}n:{node_id}"


def control(kind: int, node_id: str, body: bytes = b"") -> bytes:
    raw = node_id.encode()
    return bytes((kind, len(raw))) + raw + body


def parse_control(data: bytes) -> tuple[int, str, memoryview]:
    if len(data) < 2 or len(data) < 2 + data[1]:
        raise MalformedFrame("short control message")
    end = 2 + data[1]
    return data[0], data[2:end].decode(), memoryview(data)[end:]


def pack_envelopes(payloads: Iterable[bytes], limit: int = MAX_FRAME_BYTES) -> list[bytes]:
    """Envelopes -> as few ``M`` frames as ``limit`` allows, order kept."""
    frames: list[bytes] = []
    parts: list[bytes] = [b"M"]
    size = 1
    for payload in payloads:
        if size > 1 and size + 4 + len(payload) > limit:
            frames.append(b"".join(parts))
            parts, size = [b"M"], 1
        parts.append(_LEN.pack(len(payload)))
        parts.append(payload)
        size += 4 + len(payload)
    if size > 1:
        frames.append(b"".join(parts))
    return frames


def unpack_envelopes(frame: bytes) -> list[bytes]:
    out: list[bytes] = []
    pos, end = 1, len(frame)
    unpack = _LEN.unpack_from
    while pos < end:
        if pos + 4 > end:
            raise MalformedFrame("truncated envelope length")
        (n,) = unpack(frame, pos)
        pos += 4
        if pos + n > end:
            raise MalformedFrame("truncated envelope")
        out.append(frame[pos : pos + n])
        pos += n
    return out


def request(corr: int, reply_to: str, payload: bytes) -> bytes:
    raw = reply_to.encode()
    return b"Q" + _REQ.pack(corr, len(raw)) + raw + payload


def parse_request(frame: bytes) -> tuple[int, str, bytes]:
    if len(frame) < 1 + _REQ.size:
        raise MalformedFrame("short request")
    corr, n = _REQ.unpack_from(frame, 1)
    start = 1 + _REQ.size
    if len(frame) < start + n:
        raise MalformedFrame("short request")
    return corr, frame[start : start + n].decode(), frame[start + n :]


def reply(corr: int, status: int, payload: bytes) -> bytes:
    return b"R" + _REP.pack(corr, status) + payload


def parse_reply(frame: bytes) -> tuple[int, int, bytes]:
    if len(frame) < 1 + _REP.size:
        raise MalformedFrame("short reply")
    corr, status = _REP.unpack_from(frame, 1)
    return corr, status, frame[1 + _REP.size :]


# -- snapshot patches --------------------------------------------------------------------------

# Applies a patch atomically (readers see the old or the new snapshot, never a mix: the header's
# count must match the buckets). A missing key stays missing: the heartbeat notices and the
# owner re-announces a full snapshot.
PATCH_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 2, #ARGV, 2 do redis.call('SETRANGE', KEYS[1], tonumber(ARGV[i]), ARGV[i + 1]) end
redis.call('SETRANGE', KEYS[1], 0, ARGV[1])
return 1
"""
MAX_PATCH_RUNS = 256
_BUCKET_BYTES = filter_wire.SLOTS * 2
# The snapshot header's size, taken from the encoder rather than restated here.
_HEADER_BYTES = (
    len(filter_wire.encode_snapshot(0, 0, 0, np.zeros((1, filter_wire.SLOTS), np.uint16))) - _BUCKET_BYTES
)


def patch_snapshot(snapshot: bytes, delta: bytes) -> list[bytes | int] | None:
    """``PATCH_SCRIPT`` arguments turning the stored snapshot (as of the previous delta) into
    ``snapshot`` (the owner's filter right after ``delta``): the new header, then one
    ``offset, bytes`` pair per run of consecutive changed buckets. None when rewriting the whole
    snapshot is cheaper (a change touching a quarter of it, or scattered over too many runs)."""
    indices = filter_wire.decode_delta(delta).indices
    if len(indices) * _BUCKET_BYTES * 4 >= len(snapshot) - _HEADER_BYTES:
        return None
    breaks = np.flatnonzero(np.diff(indices) != 1) + 1
    starts = np.concatenate(([0], breaks)).tolist()
    ends = np.concatenate((breaks, [len(indices)])).tolist()
    if len(starts) > MAX_PATCH_RUNS:
        return None
    out: list[bytes | int] = [snapshot[:_HEADER_BYTES]]
    for a, b in zip(starts, ends, strict=True):
        first, last = int(indices[a]), int(indices[b - 1])
        offset = _HEADER_BYTES + first * _BUCKET_BYTES
        out += [offset, snapshot[offset : _HEADER_BYTES + (last + 1) * _BUCKET_BYTES]]
    return out
