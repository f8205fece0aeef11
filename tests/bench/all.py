"""Run the six benchmarks one after the other, optionally once the machine is quiet.

    .venv/bin/python -m tests.bench.all [--wait-quiet] [--out results.jsonl] [--only hop kv]

Each benchmark runs as its own process (``python -m tests.bench.NAME``) with
its default parameters; their tables go to stdout and their JSON lines are
also appended to ``--out``. ``--wait-quiet`` first waits until the 1-minute
load average is under 1.0 (checked every 30 s, for at most 20 minutes; then it
goes ahead and says so): the numbers of a busy machine measure the other work.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from tests.bench.common import loadavg

BENCHMARKS = ("hop", "recovery", "disable", "kv", "scale", "footprint")
QUIET_LOAD, CHECK_EVERY, GIVE_UP_AFTER = 1.0, 30.0, 20 * 60.0


def wait_quiet() -> None:
    started = time.monotonic()
    while (load := loadavg()[0]) >= QUIET_LOAD:
        waited = time.monotonic() - started
        if waited >= GIVE_UP_AFTER:
            print(f"# load {load} after {waited / 60:.0f} min of waiting; running anyway")
            return
        print(f"# load average {load} ≥ {QUIET_LOAD}; checking again in {CHECK_EVERY:g} s")
        sys.stdout.flush()
        time.sleep(CHECK_EVERY)
    print(f"# load average {loadavg()[0]}: quiet enough")


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--wait-quiet", action="store_true")
    args.add_argument("--out", default="bench-results.jsonl", help="JSON lines appended here")
    args.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    ns = args.parse_args()
    if ns.wait_quiet:
        wait_quiet()
    env = {**os.environ, "TORU_BENCH_OUT": os.path.abspath(ns.out)}
    failed = []
    for name in ns.only:
        print(f"\n## {name}\n", flush=True)
        started = time.monotonic()
        status = subprocess.run(
            [sys.executable, "-m", f"tests.bench.{name}"], env=env, check=False
        ).returncode
        print(f"# {name}: exit {status} after {time.monotonic() - started:.0f} s", flush=True)
        if status != 0:
            failed.append(name)
    if failed:
        print(f"# failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
