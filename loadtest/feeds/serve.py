"""Serve the feed API alone (no Bayeux) over a dataset, for the locust benchmark.

Usage: python3 loadtest/feeds/serve.py --db feeds-bench.db --port 8100 [--redis URL --prefix P]
The app is the one from dataset.py: APP_ID 1, key ``bench-key``.
"""

from __future__ import annotations

import argparse

import uvicorn
from dataset import APP

from feeds.api import FeedApi
from feeds.config import FanoutConfig
from feeds.service import FeedService
from feeds.store.base import Store
from feeds.store.redis import RedisStore
from feeds.store.sqlite import SqliteStore


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", default="feeds-bench.db")
    parser.add_argument("--redis", default=None)
    parser.add_argument("--prefix", default="feeds-bench:")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--pull-threshold", type=int, default=10_000)
    args = parser.parse_args()
    store: Store = RedisStore(args.redis, prefix=args.prefix) if args.redis else SqliteStore(args.db)
    service = FeedService(store, [APP], fanout=FanoutConfig(pull_threshold=args.pull_threshold))
    uvicorn.run(
        FeedApi(service, lifespan=True),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
