"""Instructions per in-process timeline read, counted by callgrind: a figure that does not move with
the VM's speed, where CPU time per read moved by 2.5-3x between sessions and by 25 % between runs.

Runs ``bench_read.py`` under ``valgrind --tool=callgrind`` twice on a fresh copy of the dataset,
with ``--reads N`` and ``--reads 2N`` (same seed, so the first N reads are the same), and reports
the difference in instructions divided by N: start-up, imports and the warm-up cancel out.  Two
runs of one revision agreed within 0.5 % here.  Needs valgrind (Debian's package).

``--posts N`` counts posts instead: ``bench_write.py`` with N and 2N posts, merging every N, so the
figure is a post with its pushes' share of a merge (each run copies the dataset itself).

    python3 loadtest/feeds/count_read.py --db /path/lead-10k.db --reads 150
    python3 loadtest/feeds/count_read.py --db /path/lead-10k.db --posts 200 --users 10000
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


def instructions(db: Path, bench: list[str]) -> int:
    """Instructions callgrind counts for one run of ``bench`` (a script here and its arguments)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "feeds.db"
        shutil.copyfile(db, copy)  # the reads may write last-read times
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out"]
        cmd += [sys.executable, str(HERE / bench[0]), "--db", str(copy), *bench[1:]]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=3600)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no callgrind total in: {done.stderr[-500:]}")
    return int(found.group(1))


def _reads(n: int, args: argparse.Namespace) -> list[str]:
    return ["bench_read.py", "--reads", str(n), "--warmup", str(args.warmup)]


def _posts(n: int, args: argparse.Namespace) -> list[str]:
    return ["bench_write.py", "--users", str(args.users), "--posts", str(n), "--merge-every", str(args.posts)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", type=Path, required=True, help="a dataset from dataset.py (not changed)")
    parser.add_argument("--reads", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--posts", type=int, default=0, help="count N posts instead of reads")
    parser.add_argument("--users", type=int, default=10_000, help="users in the dataset (--posts)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("count_read.py needs valgrind")
    n, what, bench = (args.posts, "post", _posts) if args.posts else (args.reads, "read", _reads)
    once = instructions(args.db, bench(n, args))
    twice = instructions(args.db, bench(2 * n, args))
    print(json.dumps({f"{what}s": n, f"instructions_per_{what}": round((twice - once) / n)}))


if __name__ == "__main__":
    main()
