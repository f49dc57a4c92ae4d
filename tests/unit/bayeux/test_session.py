from __future__ import annotations

from realtime.bayeux.advice import connect_advice, hold_seconds
from realtime.bayeux.outbound import Outbound, text_frame
from realtime.bayeux.session import Outcome, Session


class RecordingSink:
    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.got: list[bytes] = []

    def deliver(self, out: Outbound) -> Outcome:
        self.got.append(out.payload)
        return self.outcome

    def close(self, reason: str) -> None:
        pass


def test_queue_is_bounded_and_fifo() -> None:
    s = Session("c", max_queue=2, now=0.0, ttl=10.0)
    assert s.deliver(Outbound(b"1")) and s.deliver(Outbound(b"2"))
    assert not s.deliver(Outbound(b"3"))
    assert s.drain() == [b"1", b"2"] and s.drain() == []


def test_requeue_puts_messages_back_in_front_within_the_bound() -> None:
    s = Session("c", max_queue=3, now=0.0, ttl=10.0)
    s.enqueue(b"3")
    s.requeue([b"1", b"2", b"x"])
    assert s.drain() == [b"1", b"2", b"3"]


def test_bound_sink_gets_messages_and_a_closing_sink_falls_back_to_the_queue() -> None:
    s = Session("c", max_queue=5, now=0.0, ttl=10.0)
    s.sink = RecordingSink(Outcome.DELIVERED)
    assert s.deliver(Outbound(b"a")) and not s.queue
    s.sink = RecordingSink(Outcome.QUEUE)
    assert s.deliver(Outbound(b"b")) and list(s.queue or ()) == [b"b"]
    s.sink = RecordingSink(Outcome.OVERFLOW)
    assert not s.deliver(Outbound(b"c"))


def test_expiry_uses_the_time_it_is_given() -> None:
    s = Session("c", max_queue=1, now=100.0, ttl=10.0)
    assert not s.is_expired(109.9) and s.is_expired(110.0)
    s.ping(109.0, 10.0)
    assert not s.is_expired(118.0)
    s.pinned = True
    assert not s.is_expired(1e9)


def test_on_queue_fires_for_queued_messages() -> None:
    s = Session("c", max_queue=5, now=0.0, ttl=1.0)
    fired: list[int] = []
    s.on_queue = lambda: fired.append(1)
    s.enqueue(b"x")
    assert fired == [1]


def test_hold_seconds_clamps_client_advice() -> None:
    assert hold_seconds({"timeout": 0}, 45.0) == 0.0
    assert hold_seconds({"timeout": 1500}, 45.0) == 1.5
    assert hold_seconds({"timeout": 600000}, 45.0) == 45.0
    assert hold_seconds({"timeout": -5}, 45.0) == 0.0
    assert hold_seconds({"timeout": "10"}, 45.0) == 45.0
    assert hold_seconds({"timeout": True}, 45.0) == 45.0
    assert hold_seconds(None, 45.0) == 45.0


def test_eventsource_advice() -> None:
    assert connect_advice("eventsource", 45.0, 0.0) == {"reconnect": "retry", "interval": 45000, "timeout": 0}
    assert connect_advice("websocket", 45.0, 0.0) == {"reconnect": "retry", "interval": 0, "timeout": 45000}


def test_text_frame_lengths() -> None:
    assert text_frame(b"ab") == b"\x81\x02ab"
    assert text_frame(b"x" * 200)[:4] == b"\x81\x7e\x00\xc8"
    assert text_frame(b"x" * 70000)[:10] == b"\x81\x7f" + (70000).to_bytes(8, "big")
    out = Outbound(b'{"a":1}')
    assert out.batch == b'[{"a":1}]' and out.sse_event == b'data: [{"a":1}]\r\n\r\n'
    assert out.ws_frame is out.ws_frame  # built once
