"""The loop-stall probe of loadtest/feeds/stall_probe reports a blocked loop with the blocking call."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = textwrap.dedent(
    """
    import asyncio, sys, time
    from feeds.store.sqlite import SqliteStore

    def hold_the_loop():
        time.sleep(0.08)

    async def main():
        store = SqliteStore(sys.argv[1])
        await store.start()
        await asyncio.sleep(0.05)
        hold_the_loop()
        await asyncio.sleep(0.05)
        await store.close()

    asyncio.run(main())
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_a_blocked_loop_is_reported_with_its_stack(tmp_path: Path) -> None:
    log = tmp_path / "probe.log"
    env = {
        **os.environ,
        "STALL_PROBE": str(log),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "loadtest/feeds/stall_probe"), str(ROOT)]),
    }
    cmd = [sys.executable, "-c", SCRIPT, str(tmp_path / "f.db")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    text = log.read_text()
    assert " LAG " in text and "hold_the_loop" in text, text
