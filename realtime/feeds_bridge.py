"""Feed changes -> Bayeux: implements ``feeds.notify.Notifier`` by publishing Stream's
realtime message to each affected feed's channel, ``/site-<app_id>-feed-<group><id>``.

Publishing goes through the engine, so a feed nobody is subscribed to costs nothing
locally and, in a cluster, nothing on the wire (the router only sends where the
filters say a subscriber may be).  Before that, :meth:`BayeuxNotifier.watched` lets the
engine skip building the updates of pushed followers nobody may be watching (most of them):
the local subscription index and the broker's filter replicas answer without a message.
The default channel policy lets a client subscribe to such a channel only with a read token
for that feed (``signature`` in ``ext``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from feeds.apps import App
from feeds.config import FanoutConfig, parse_groups
from feeds.notify import FeedUpdate
from feeds.service import FeedService
from feeds.store.base import Store
from realtime.bayeux.codec import encode
from realtime.server import BayeuxServer
from realtime.settings import Settings

log = logging.getLogger("realtime.feeds")


def feed_channel(app_id: str, feed_together: str) -> str:
    return f"/site-{app_id}-feed-{feed_together}"


def key_channel(key: str) -> str:
    """``feed_channel`` of a store key ``<app_id>/<group>:<user_id>``, in two string operations:
    :meth:`BayeuxNotifier.watched` runs it for every pushed follower."""
    return "/site-" + key.replace("/", "-feed-", 1).replace(":", "", 1)


class BayeuxNotifier:
    def __init__(self, server: BayeuxServer) -> None:
        self.server = server

    def watched(self, feed_keys: Sequence[str]) -> list[str]:
        channels = [key_channel(key) for key in feed_keys]
        flags = self.server.may_deliver_many(channels)
        return [key for key, watched in zip(feed_keys, flags, strict=True) if watched]

    async def feeds_changed(self, updates: Sequence[FeedUpdate]) -> None:
        for update in updates:
            channel = feed_channel(update.app_id, update.feed_together)
            try:
                self.server.publish_encoded(channel, encode({"channel": channel, "data": update.message()}))
            except Exception:
                log.exception("could not publish the update of %s", update.feed_id)


def build_store(settings: Settings) -> Store:
    url = settings.feeds_store
    if url.startswith("sqlite:"):
        from feeds.store.sqlite import SqliteStore

        path = Path(url.removeprefix("sqlite:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        durability: Literal["normal", "full"] = "full" if settings.feeds_durability == "full" else "normal"
        return SqliteStore(
            str(path),
            durability=durability,
            cache_mb=settings.feeds_cache_mb,
            lock_pages=settings.feeds_lock_pages,
            prewarm=settings.feeds_prewarm,
        )
    from feeds.store.redis import RedisStore

    return RedisStore(url)


def build_feed_service(settings: Settings, apps: list[App], notifier: BayeuxNotifier) -> FeedService:
    """The feed engine of a node, from ``[storage]`` and the ``[feeds]`` tables."""
    table: dict[str, Any] = dict(settings.extra.get("feeds") or {})
    groups = parse_groups(table["groups"]) if "groups" in table else None
    fanout = FanoutConfig(**table["fanout"]) if "fanout" in table else None
    return FeedService(build_store(settings), apps, groups, notifier, fanout=fanout)
