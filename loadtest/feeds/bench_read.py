"""In-process cost of a timeline read over a dataset from dataset.py: ``FeedService.read`` of
``timeline:<u>`` with ``ReadParams()`` (limit 25, hydrated), as api.py calls it, without HTTP.

Users are drawn at random (--seed); --warmup reads of other random users go first and are not
counted.  Reports wall time per read (p50/p99) and CPU time per read (``time.process_time``, so pin
the process, e.g. ``taskset -c 1``).  The dataset's --now must be recent (within a day): an older
last-read time makes each read a backfilling write.

Usage: taskset -c 1 python3 loadtest/feeds/bench_read.py --db feeds.db [--reads 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import time
from contextlib import closing
from typing import Any

from dataset import APP

from feeds.config import FanoutConfig
from feeds.reads import ReadParams
from feeds.service import FeedService
from feeds.store.sqlite import SqliteStore


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    with closing(sqlite3.connect(f"file:{args.db}?mode=ro", uri=True)) as conn:
        (users,) = conn.execute("SELECT count(*) FROM feed_state").fetchone()
    rng = random.Random(args.seed)
    svc = FeedService(SqliteStore(args.db), [APP], fanout=FanoutConfig(pull_threshold=args.pull_threshold))
    await svc.start()
    try:
        for _ in range(args.warmup):
            await svc.read(APP, svc.feed(APP, "timeline", str(rng.randrange(users))), ReadParams())
        wall: list[float] = []
        cpu: list[float] = []
        results = 0
        for _ in range(args.reads):
            feed = svc.feed(APP, "timeline", str(rng.randrange(users)))
            w0, c0 = time.perf_counter(), time.process_time()
            page = await svc.read(APP, feed, ReadParams())
            wall.append(time.perf_counter() - w0)
            cpu.append(time.process_time() - c0)
            results += len(page["results"])
    finally:
        await svc.close()
    cuts = statistics.quantiles(wall, n=100)
    return {
        "db": args.db,
        "users": users,
        "reads": args.reads,
        "mean_results": results / args.reads,
        "p50_ms": cuts[49] * 1000,
        "p99_ms": cuts[98] * 1000,
        "mean_ms": statistics.fmean(wall) * 1000,
        "cpu_ms_per_read": sum(cpu) / args.reads * 1000,
        "cpu_share": sum(cpu) / sum(wall),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", default="feeds-bench.db")
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--pull-threshold", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    stats = asyncio.run(measure(parser.parse_args()))
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in stats.items()}))


if __name__ == "__main__":
    main()
