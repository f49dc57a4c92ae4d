"""Malformed and hostile batches: every answer is a well-formed reply or a BadRequest,
nothing raises, and state stays within its bounds."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import orjson
from helpers.inprocess_node import make_node
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from realtime.bayeux.codec import decode_batch
from realtime.bayeux.errors import BadRequest
from realtime.server import Context

ERROR_RE = re.compile(r"\d{3}:[^:]*:.+", re.DOTALL)
META = ["/meta/handshake", "/meta/connect", "/meta/subscribe", "/meta/unsubscribe", "/meta/disconnect"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
channels = st.one_of(
    st.sampled_from([*META, "/meta/x", "/a", "/a/*", "/a/**", "/service/x", "/**", "", "/", "a"]),
    st.text(max_size=12),
    json_values,
)
messages = st.fixed_dictionaries(
    {"channel": channels},
    optional={
        "clientId": st.one_of(st.just("CID"), st.text(max_size=40), json_values),
        "id": json_values,
        "data": json_values,
        "ext": json_values,
        "advice": st.one_of(
            json_values, st.fixed_dictionaries({"timeout": st.one_of(st.integers(), json_values)})
        ),
        "subscription": st.one_of(
            st.text(max_size=12), st.lists(st.text(max_size=12), max_size=3), json_values
        ),
        "version": json_values,
        "supportedConnectionTypes": st.one_of(
            st.lists(st.sampled_from(["websocket", "long-polling", "x"])), json_values
        ),
        "connectionType": st.one_of(
            st.sampled_from(["websocket", "long-polling", "eventsource"]), json_values
        ),
    },
)
raw_bodies = st.one_of(
    st.binary(max_size=200),
    st.lists(messages, max_size=6).map(
        lambda b: orjson.dumps(b, option=orjson.OPT_NON_STR_KEYS) if _encodable(b) else b"[]"
    ),
    json_values.map(lambda v: orjson.dumps(v) if _encodable(v) else b"{}"),
)


def _encodable(value: Any) -> bool:
    try:
        orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
        return True
    except orjson.JSONEncodeError:
        return False


def check_reply(reply: Any) -> None:
    assert isinstance(reply, dict)
    if "successful" in reply:
        assert isinstance(reply["successful"], bool)
        if not reply["successful"]:
            assert isinstance(reply["error"], str) and ERROR_RE.fullmatch(reply["error"]), reply


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies=st.lists(raw_bodies, min_size=1, max_size=5))
def test_hostile_batches_get_well_formed_answers(bodies: list[bytes]) -> None:
    async def run() -> None:
        node = make_node(max_queue_messages=5, max_sessions=20, max_subscriptions_per_client=3)
        await node.broker.start(node.engine.deliver_remote)
        cid = await node.handshake()
        for body in bodies:
            body = body.replace(b"CID", cid.encode())
            try:
                batch = decode_batch(body, 100)
            except BadRequest:
                continue
            for message in batch:
                if message.get("channel") == "/meta/connect":
                    message["advice"] = {"timeout": 0}  # never wait in a fuzz run
            result = await node.server.process(batch, Context("long-polling"))
            parts = list(result.replies)
            if result.pending is not None:
                await asyncio.wait_for(result.pending.future, 2)
                finished = await node.server.finish(result.pending)
                assert finished is not None
                parts.append(finished)
            for part in parts:
                check_reply(orjson.loads(part))
        assert len(node.engine.sessions) <= 20
        for session in node.engine.sessions.values():
            assert session.queued <= 5
        assert len(node.engine.holds) <= len(node.engine.sessions)

    asyncio.run(run())
