"""Node-local state: sessions, the exact subscription index, mailboxes and holds."""

from __future__ import annotations

from realtime.engine.engine import Engine
from realtime.engine.outbound import Outbound

__all__ = ["Engine", "Outbound"]
