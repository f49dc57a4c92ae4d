"""Deferred pushes: the part of a fan-out that finishes after its write is acknowledged.

Theory of operation.  ``FeedService._fan_out`` splits a push to more than ``inline_fanout`` followers
of one feed into chunks of ``PUSH_CHUNK`` feeds and journals them as :class:`~feeds.store.base.PushJob`
records in the same atomic store write as the activity's own entries, leased for ``push_lease_s``.
Once that write returns (the acknowledgement), :meth:`Pushes.run_later` writes the chunks in a
background task, each chunk's entries and the removal of its record in one store write, and notifies
per chunk.  A crash at any point leaves exactly the unfinished chunks in the journal.

Resuming.  :meth:`Pushes.start` runs one resume pass at once and then a sweep every half lease.  A
pass claims the records whose lease ended and runs them like the background task does.  SqliteStore
releases every lease when it starts, so the first pass after a restart finds every orphan; with
RedisStore a restarted node (or any other node) takes a dead node's records once their lease ends.
Sweeps also retry chunks whose background task failed.  Running a chunk twice (a lease that ran out
under a slow owner) only repeats idempotent inserts; its notification may be sent twice.

A chunk runs only while its activity is still in the feed it was posted to, so a removal that
happened while the chunk waited is not undone by it.

Bounds.  A process keeps at most ``max_pending_push_jobs`` chunks in flight; a fan-out that would
exceed that writes its pushes before the acknowledgement instead (latency instead of journal growth).
So the journal holds at most that many records per live process, plus those of crashed processes
until a sweep takes them, and a pass holds ``RESUME_PAGE`` records in memory at a time.  A record
claimed more than ``MAX_ATTEMPTS`` times is dropped with an error log: a record that always fails
cannot stay forever.  Clean shutdown (:meth:`Pushes.close`) stops the sweep and waits for every
running task, so it finishes what it started; whatever it did not start stays journalled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from feeds.activity import Activity
from feeds.config import FanoutConfig
from feeds.keys import FeedRef
from feeds.store.base import ClaimedJob, Entry, PushJob, Store

log = logging.getLogger(__name__)
PUSH_CHUNK = 128  # follower feeds per journal record and per background write: short group commits
RESUME_PAGE = 16  # records claimed at a time by a resume pass
MAX_ATTEMPTS = 5

NotifyPushed = Callable[[Activity, Sequence[str], str], Awaitable[None]]


def chunked(app: str, keys: Sequence[str], entry: Entry, cap: int) -> list[PushJob]:
    """The journal records of a push of ``entry`` into ``keys``."""
    return [
        PushJob(app, entry, cap, tuple(keys[i : i + PUSH_CHUNK])) for i in range(0, len(keys), PUSH_CHUNK)
    ]


class Pushes:
    def __init__(
        self, store: Store, config: FanoutConfig, *, now_us: Callable[[], int], notify: NotifyPushed
    ) -> None:
        self._store = store
        self._config = config
        self._now_us = now_us
        self._notify = notify
        self._lease_us = int(config.push_lease_s * 1_000_000)
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def lease_until_us(self) -> int:
        return self._now_us() + self._lease_us

    def reserve(self, chunks: int) -> bool:
        """Take ``chunks`` in-flight slots, or none if that would pass ``max_pending_push_jobs``."""
        if self._in_flight + chunks > self._config.max_pending_push_jobs:
            return False
        self._in_flight += chunks
        return True

    def release(self, chunks: int) -> None:
        self._in_flight -= chunks

    def run_later(self, act: Activity, jobs: list[ClaimedJob]) -> None:
        """Write journalled (and reserved) ``jobs`` of ``act`` in a background task."""
        self._track(self._run_later(act, jobs))

    async def _run_later(self, act: Activity, jobs: list[ClaimedJob]) -> None:
        done = 0
        try:
            if self._config.push_delay_s > 0:
                await asyncio.sleep(self._config.push_delay_s)
            for claimed in jobs:
                await self._run(claimed, act)
                done += 1
                self.release(1)
        except Exception:  # task boundary: the unfinished chunks stay journalled for a sweep
            log.exception("background fan-out of activity %s failed", act.id)
        finally:
            self.release(len(jobs) - done)

    async def _run(self, claimed: ClaimedJob, act: Activity | None) -> None:
        job = claimed.job
        origin = job.entry.origin or ""
        if not await self._store.get_entries(FeedRef.parse(job.app, origin).key, [job.entry.id]):
            await self._store.finish_push_job(claimed.id, None)  # removed meanwhile: do not resurrect
            return
        await self._store.finish_push_job(claimed.id, job)
        if act is not None:
            await self._notify(act, job.feeds, origin)

    async def resume(self) -> int:
        """Run every journalled chunk whose lease has ended; returns how many records it took."""
        taken = 0
        while True:
            now = self._now_us()
            page = await self._store.claim_push_jobs(now, now + self._lease_us, RESUME_PAGE)
            if not page:
                return taken
            taken += len(page)
            acts: dict[tuple[str, int], Activity | None] = {}
            for claimed in page:
                job = claimed.job
                try:
                    if claimed.attempts > MAX_ATTEMPTS:
                        log.error(
                            "dropping push %s of activity %s after %d attempts",
                            claimed.id,
                            job.entry.id,
                            MAX_ATTEMPTS,
                        )
                        await self._store.finish_push_job(claimed.id, None)
                        continue
                    key = (job.app, job.entry.id)
                    if key not in acts:
                        acts[key] = (await self._store.get_activities(job.app, [job.entry.id])).get(
                            job.entry.id
                        )
                    await self._run(claimed, acts[key])
                except Exception:  # this record is retried once its new lease ends
                    log.exception("resumed push %s of activity %s failed", claimed.id, job.entry.id)

    async def _resume_logged(self) -> None:
        try:
            taken = await self.resume()
        except Exception:  # task boundary: the next sweep tries again
            log.exception("resuming journalled pushes failed")
        else:
            if taken:
                log.info("resumed %d journalled pushes", taken)

    def start(self) -> None:
        """Resume orphaned chunks now (tracked: :meth:`drain` waits for it), then sweep."""
        self._track(self._resume_logged())
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(max(self._config.push_lease_s / 2, 0.5))  # a zero lease must not spin
            # shielded: stopping the sweep must not cut a pass short, close() drains it instead
            await asyncio.shield(self._track(self._resume_logged()))

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.wait([self._sweeper])
            self._sweeper = None
        await self.drain()

    async def drain(self) -> None:
        """Wait for every background push and resume pass (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _track(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
