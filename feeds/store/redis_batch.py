"""Script calls batched per event-loop iteration: the RedisStore's hot write path.

Many concurrent requests each making one script call would each pay redis-py's per-command cost
(taking a pooled connection, writing, reading and handing it back), which on the fan-out benchmark
cost more CPU than Redis spent running the scripts.  :class:`ScriptBatch` queues the calls made
during one loop iteration and sends them as one non-transactional pipeline on one connection, the
way SqliteStore group-commits.  Each script still runs atomically on its own; batching changes
neither what a call writes nor when its caller sees it (after its reply), only how many round trips
carry them.  Calls queued in the same iteration were concurrent, so they carry no order among
themselves (batches larger than ``max_batch`` go out as concurrent pipelines).

Bounds: a pipeline carries at most ``max_batch`` calls; the queue holds at most one call per waiting
caller, and the callers are bounded by the request limits above the store.  A script the server
does not know (restarted, SCRIPT FLUSH) is loaded and the failed calls are run once more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

_Call = tuple[Any, tuple[Any, ...], "asyncio.Future[Any]"]


class ScriptBatch:
    def __init__(self, redis: Any, max_batch: int = 128) -> None:
        self._redis = redis
        self._max_batch = max_batch
        self._queue: list[_Call] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def call(self, script: Any, keys: Sequence[Any], args: Sequence[Any]) -> asyncio.Future[Any]:
        """Queue ``script`` (a redis-py registered script); the future gets its reply or error."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        if not self._queue:
            task = loop.create_task(self._flush())  # runs once this iteration's callers have queued
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._queue.append((script, (len(keys), *keys, *args), fut))
        return fut

    async def close(self) -> None:
        """Wait for the pipelines in flight (the store closes its pool after this)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _flush(self) -> None:
        queued, self._queue = self._queue, []
        await asyncio.gather(
            *(self._send(queued[i : i + self._max_batch]) for i in range(0, len(queued), self._max_batch))
        )

    async def _send(self, calls: list[_Call]) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for script, args, _ in calls:
                    pipe.evalsha(script.sha, *args)
                replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # the connection failed: every caller of this batch learns it
            for _, _, fut in calls:
                if not fut.done():
                    fut.set_exception(exc)
            return
        except BaseException:
            for _, _, fut in calls:
                fut.cancel()
            raise
        for (script, args, fut), reply in zip(calls, replies, strict=True):
            if isinstance(reply, NoScriptError):
                try:
                    await self._redis.script_load(script.script)
                    reply = await self._redis.evalsha(script.sha, *args)
                except Exception as exc:
                    reply = exc
            if fut.done():  # its caller was cancelled
                continue
            if isinstance(reply, Exception):
                fut.set_exception(reply)
            else:
                fut.set_result(reply)
