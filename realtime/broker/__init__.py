"""The cluster seam: how a node hands messages to the other nodes of a deployment."""

from __future__ import annotations

from realtime.broker.base import Broker, DeliverCallback, NodeUnavailable, ServeCallback
from realtime.broker.memory import MemoryBroker, MemoryHub

__all__ = ["Broker", "DeliverCallback", "MemoryBroker", "MemoryHub", "NodeUnavailable", "ServeCallback"]
