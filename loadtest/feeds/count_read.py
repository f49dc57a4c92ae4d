"""Instructions per in-process timeline read, counted by callgrind: a figure that does not move with
the VM's speed, where CPU time per read moved by 2.5-3x between sessions and by 25 % between runs.

Runs ``bench_read.py`` under ``valgrind --tool=callgrind`` twice on a fresh copy of the dataset,
with ``--reads N`` and ``--reads 2N`` (same seed, so the first N reads are the same), and reports
the difference in instructions divided by N: start-up, imports and the warm-up cancel out.  Two
runs of one revision agreed within 0.5 % here.  Needs valgrind (Debian's package).

    python3 loadtest/feeds/count_read.py --db /path/lead-10k.db --reads 150
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def instructions(db: Path, reads: int, warmup: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "feeds.db"
        shutil.copyfile(db, copy)  # the reads may write last-read times
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out"]
        cmd += [sys.executable, str(HERE / "bench_read.py"), "--db", str(copy)]
        cmd += ["--reads", str(reads), "--warmup", str(warmup)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=3600)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no callgrind total in: {done.stderr[-500:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", type=Path, required=True, help="a dataset from dataset.py (not changed)")
    parser.add_argument("--reads", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=100)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("count_read.py needs valgrind")
    once = instructions(args.db, args.reads, args.warmup)
    twice = instructions(args.db, 2 * args.reads, args.warmup)
    print(json.dumps({"reads": args.reads, "instructions_per_read": round((twice - once) / args.reads)}))


if __name__ == "__main__":
    main()
