"""Where does a node's event loop wait?  A probe loaded into ``realtime serve`` by Python itself.

    STALL_PROBE=/tmp/probe.log PYTHONPATH=loadtest/feeds/stall_probe:. realtime serve ...

Python imports ``sitecustomize`` at start-up when it is on the path; without ``STALL_PROBE`` this
file does nothing.  With it, once the SQLite feed store has started, it writes to that file:

* ``LAG``: the loop did not run a 2 ms timer for over 25 ms, with the main thread's Python stack
  at that moment (a busy loop shows the request it is in; a blocked one, the call that blocks);
* ``GC``: a garbage collection that took over 5 ms, and its generation;
* ``COMMIT``: a group commit that took over 15 ms, and how many writes it held;
* ``HOLD``: every time the WAL keeper held commits back to start the WAL over, for how long;
* ``D``: every 4 ms that the main thread is in uninterruptible sleep (waiting for the disk), its
  kernel stack from ``/proc`` (needs root), e.g. a page fault or a ``pwrite`` waiting for a read.

Linux only; a diagnostic, not part of the product (it costs a few per cent of a core).
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

LAG_S, GC_S, COMMIT_S, D_EVERY_S = 0.025, 0.005, 0.015, 0.004


def _install(path: str) -> None:
    import feeds.store.sqlite as sqlite_store
    import feeds.store.sqlite_commit as sqlite_commit
    import feeds.store.sqlite_wal as sqlite_wal

    out = open(path, "w", buffering=1)  # noqa: SIM115 (open for the life of the process)
    main_thread, main_tid = threading.get_ident(), threading.get_native_id()
    tick = [time.perf_counter()]
    gc_began = [0.0]

    def note(line: str) -> None:
        out.write(f"{time.time():.3f} {line}\n")

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_began[0] = time.perf_counter()
        elif (took := time.perf_counter() - gc_began[0]) > GC_S:
            note(f"GC gen{info['generation']} {took * 1000:.1f} ms")

    gc.callbacks.append(on_gc)
    run_batch = sqlite_commit.GroupCommit._run_batch

    def timed_batch(self: Any, conn: Any, batch: list[Any]) -> Any:
        began = time.perf_counter()
        try:
            return run_batch(self, conn, batch)
        finally:
            if (took := time.perf_counter() - began) > COMMIT_S:
                note(f"COMMIT {took * 1000:.1f} ms, {len(batch)} writes")

    sqlite_commit.GroupCommit._run_batch = timed_batch  # type: ignore[method-assign]

    # ``holding`` is a plain attribute of the keeper; a property on the class sees every change.
    def get_holding(self: Any) -> bool:
        return bool(self.__dict__.get("_probe_holding", False))

    def set_holding(self: Any, value: bool) -> None:
        if value:
            self.__dict__["_probe_held_at"] = time.perf_counter()
        elif self.__dict__.get("_probe_holding"):
            note(f"HOLD {(time.perf_counter() - self.__dict__['_probe_held_at']) * 1000:.1f} ms")
        self.__dict__["_probe_holding"] = value

    sqlite_wal.WalKeeper.holding = property(get_holding, set_holding)  # type: ignore[assignment]

    def watch_lag() -> None:
        reported = 0.0
        while True:
            time.sleep(0.003)
            lag = time.perf_counter() - tick[0]
            if lag > LAG_S and reported != tick[0]:
                reported = tick[0]
                frame = sys._current_frames().get(main_thread)
                stack = "".join(traceback.format_stack(frame, limit=10)) if frame else "?\n"
                note(f"LAG {lag * 1000:.1f} ms\n{stack}")

    def watch_disk() -> None:
        while True:
            time.sleep(D_EVERY_S)
            try:
                stat = Path(f"/proc/self/task/{main_tid}/stat").read_text()
                if stat.rsplit(")", 1)[1].split()[0] == "D":
                    lines = Path(f"/proc/self/task/{main_tid}/stack").read_text().splitlines()
                    note("D " + " | ".join(line.split()[1].split("+")[0] for line in lines[:12]))
            except OSError as exc:  # no /proc stack without root: say so once and stop
                note(f"D unavailable: {exc}")
                return

    start = sqlite_store.SqliteStore.start

    async def probed_start(self: Any) -> None:
        await start(self)
        import asyncio

        loop = asyncio.get_running_loop()

        def beat() -> None:
            tick[0] = time.perf_counter()
            loop.call_later(0.002, beat)

        beat()
        for target in (watch_lag, watch_disk):
            threading.Thread(target=target, name=f"probe-{target.__name__}", daemon=True).start()

    sqlite_store.SqliteStore.start = probed_start  # type: ignore[method-assign]


if os.environ.get("STALL_PROBE"):
    _install(os.environ["STALL_PROBE"])
