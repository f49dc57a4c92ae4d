"""Side threads of the embedded store, and giving the core to the event loop.

The node is one process on one core.  A side thread at the loop's own priority gets its fair share
of that core whenever both are runnable.  One whose work can wait lowers itself to nice 19: the
scheduler weighs it 15 against the loop's 1024, so while both want the core it gets about 1.5 % of
it, and the loop, woken by a socket, preempts it.  Not ``SCHED_IDLE``: an idle-class thread never
runs while the loop is saturated.  The WAL checkpointer keeps the loop's priority: lowered (either
way), ``test_wal_stays_bounded_under_continuous_writes_and_reads_go_on`` failed with the other core
busy (17-20 MB against < 8), and 2 pairs at 1500 req/s showed no gain from lowering it.  That test
also failed with the checkpointer at the loop's priority before the commit hold of
:mod:`feeds.store.sqlite_wal`, so what lowering it costs is not measured apart.  The GIL does not
invert the priorities: a thread waiting for the GIL sleeps, so the side thread runs until it
releases it.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)
LOWEST = 19


def yield_to_loop() -> bool:
    """Give the calling thread the lowest priority; False where that cannot be done per thread."""
    try:
        # Linux keeps a nice value per thread, addressed by its thread id
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOWEST)
    except (OSError, AttributeError) as exc:  # another platform, or a sandbox that forbids it
        log.info("side thread keeps its priority: %s", exc)
        return False
    return True


class SideThread:
    """A daemon thread that runs :meth:`run` until :meth:`stop` (at the lowest priority if
    ``lowest``); ``run`` should return once ``stopping`` is set (``stopping.wait(s)`` is its
    sleep)."""

    def __init__(self, name: str, *, lowest: bool) -> None:
        self._name, self._lowest = name, lowest
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.stopping.clear()
        self._thread = threading.Thread(target=self._main, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Blocking (call it off the loop): returns once ``run`` has returned."""
        self.stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _main(self) -> None:
        if self._lowest:
            yield_to_loop()
        self.run()

    def run(self) -> None:
        raise NotImplementedError
