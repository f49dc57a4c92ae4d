"""The embedded feed engine: Stream-compatible activities, feeds, follows and fan-out.

This package never imports ``realtime``; live updates leave it through :class:`feeds.notify.Notifier`.
"""

from __future__ import annotations
