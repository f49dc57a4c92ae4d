"""Side threads of the embedded store run only when the event loop does not want the core.

The node is one process on one core.  A side thread at the loop's own priority gets its fair share
of that core whenever both are runnable, so a checkpoint that copies and syncs for ten milliseconds
stretches every request that arrives meanwhile.  Linux's ``SCHED_IDLE`` policy gives the thread the
core only while the loop sleeps; the loop, woken by a socket, preempts it at once.  The GIL does not
invert this: a thread waiting for the GIL sleeps, so the idle thread runs until it releases it.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def yield_to_loop() -> bool:
    """Put the calling thread under ``SCHED_IDLE``; False where the platform has no such policy."""
    policy = getattr(os, "SCHED_IDLE", None)
    if policy is None:
        return False
    try:
        os.sched_setscheduler(0, policy, os.sched_param(0))  # 0: the calling thread, on Linux
    except OSError as exc:  # e.g. a seccomp profile that forbids it: the thread still works
        log.info("side thread keeps its priority: %s", exc)
        return False
    return True
