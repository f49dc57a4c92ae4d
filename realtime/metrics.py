"""Counters kept as plain ints on the hot path, rendered in Prometheus text on scrape.

Incrementing a prometheus_client Counter per delivery would cost more than the
delivery itself; the engine bumps ints and a custom collector reads them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


@dataclass
class Stats:
    messages_in: int = 0
    messages_out: int = 0
    publishes: int = 0
    handshakes: int = 0
    queue_overflows: int = 0
    sessions_expired: int = 0
    false_positives: int = 0
    bad_requests: int = 0
    connections: dict[str, int] = field(default_factory=dict)
    limits: dict[str, int] = field(default_factory=dict)

    def limited(self, name: str) -> None:
        """A request was refused by limit ``name`` (or by authentication: ``auth``)."""
        self.limits[name] = self.limits.get(name, 0) + 1

    def opened(self, transport: str) -> None:
        self.connections[transport] = self.connections.get(transport, 0) + 1

    def closed(self, transport: str) -> None:
        self.connections[transport] = self.connections.get(transport, 0) - 1


_HELP = {
    "messages_in": "Bayeux messages received",
    "messages_out": "Messages delivered to clients (one per recipient)",
    "publishes": "Messages published",
    "handshakes": "Successful handshakes",
    "queue_overflows": "Sessions ended because their queue or socket buffer overflowed",
    "sessions_expired": "Sessions ended by expiry",
    "false_positives": "Cluster messages dropped because no local subscriber matched",
    "bad_requests": "Requests rejected as malformed (HTTP 400 or ignored frame)",
}


class StatsCollector(Collector):
    def __init__(self, stats: Stats, gauges: dict[str, tuple[str, Callable[[], float]]]) -> None:
        self.stats = stats
        self.gauges = gauges

    def collect(self) -> Iterator[Metric]:
        for f in fields(Stats):
            if f.name in _HELP:
                yield CounterMetricFamily(
                    f"realtime_{f.name}", _HELP[f.name], value=getattr(self.stats, f.name)
                )
        conns = GaugeMetricFamily(
            "realtime_connections", "Open connections by transport", labels=["transport"]
        )
        for transport, n in sorted(self.stats.connections.items()):
            conns.add_metric([transport], n)
        yield conns
        limits = CounterMetricFamily(
            "realtime_limit_rejections", "Requests refused by a limit or by authentication", labels=["limit"]
        )
        for name, n in sorted(self.stats.limits.items()):
            limits.add_metric([name], n)
        yield limits
        for name, (doc, read) in self.gauges.items():
            yield GaugeMetricFamily(f"realtime_{name}", doc, value=read())


BROKER_COUNTERS = {
    "frames_sent": "Cluster messages sent on the broker wire",
    "frames_received": "Cluster messages received from the broker",
    "envelopes_sent": "Channel envelopes sent to other nodes (several may share a message)",
    "envelopes_received": "Channel envelopes received from other nodes",
    "bytes_sent": "Bytes sent on the broker wire",
    "bytes_received": "Bytes received from the broker",
    "dropped": "Publishes dropped while the broker was disconnected or backlogged",
    "reconnects": "Broker reconnections",
    "snapshot_loads": "Filter replicas (re)loaded from snapshots",
    "filter_rebuilds": "Own filter rebuilt at a larger size",
}


class BrokerCollector(Collector):
    """Whatever of ``BROKER_COUNTERS`` the broker keeps (the memory broker keeps none)."""

    def __init__(self, broker: object) -> None:
        self.broker = broker

    def collect(self) -> Iterator[Metric]:
        for name, doc in BROKER_COUNTERS.items():
            value = getattr(self.broker, name, None)
            if isinstance(value, int):
                yield CounterMetricFamily(f"realtime_broker_{name}", doc, value=value)
