"""The live-update seam: what the engine tells the outside world after a change is stored.

``FeedService`` calls :meth:`Notifier.feeds_changed` once per write request, after the change is
durable and fanned out, with one :class:`FeedUpdate` per affected feed (the feed written to, its
pushed followers, ``to`` targets).  Handing over the whole batch at once lets an implementation
route all the channels bound for one node in a single message.  Pull-mode followers of large authors
are not listed: their timelines do not change on write.  A notifier must not raise; the engine logs
and ignores its failures, since the write has already happened.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(slots=True)
class FeedUpdate:
    app_id: str
    group: str
    user_id: str
    published_at: str
    new: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    deleted_foreign_ids: list[list[str]] = field(default_factory=list)  # [foreign_id, time] pairs
    mark_seen: bool | list[str] | None = None
    mark_read: bool | list[str] | None = None

    @property
    def feed_id(self) -> str:
        """``user:42``."""
        return f"{self.group}:{self.user_id}"

    @property
    def feed_together(self) -> str:
        """``user42``: the form in channel names (``/site-<app_id>-feed-user42``) and token scopes."""
        return f"{self.group}{self.user_id}"

    def message(self) -> dict[str, Any]:
        """The payload Stream publishes to the feed's realtime channel."""
        out: dict[str, Any] = {
            "feed": self.feed_id,
            "app_id": self.app_id,
            "published_at": self.published_at,
            "new": self.new,
            "deleted": self.deleted,
            "deleted_foreign_ids": self.deleted_foreign_ids,
        }
        # Stream's clients type these as 'all' | 'current' | group ids.
        if self.mark_seen is not None:
            out["mark_seen"] = "all" if self.mark_seen is True else self.mark_seen
        if self.mark_read is not None:
            out["mark_read"] = "all" if self.mark_read is True else self.mark_read
        return out


class Notifier(Protocol):
    async def feeds_changed(self, updates: Sequence[FeedUpdate]) -> None: ...

    def watched(self, feed_keys: Sequence[str]) -> list[str]:
        """The store keys among ``feed_keys`` whose channel may have a subscriber, on this node or
        another.  Pushes to followers build updates only for these: most followers are offline,
        and building and routing a message each cost more than the push itself.  A superset is
        fine; leaving out a watched feed loses its live update."""
        ...
