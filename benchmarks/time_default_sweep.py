"""Time `tuner sweep` with no arguments, the way the README's first command runs it.

Each run starts in a new empty folder, so each pays what a first sweep pays (imports,
creating the MLflow store, the preflight, 30 trials, the report). Prints every wall
time, the median, and the machine it ran on.

    python benchmarks/time_default_sweep.py [--runs 3]
"""

from __future__ import annotations

import argparse
import datetime
import statistics

from common import machine, run_sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    times = []
    for i in range(args.runs):
        sweep = run_sweep(study=None)
        elapsed = sweep.wall
        summary = next((ln for ln in sweep.stdout.splitlines() if ln.startswith("done")), "")
        best = next((ln for ln in sweep.stdout.splitlines() if ln.startswith("best")), "")
        print(f"run {i + 1}: {elapsed:.1f} s  ({summary}; {best})", flush=True)
        times.append(elapsed)
    print(f"median of {len(times)}: {statistics.median(times):.1f} s")
    print(f"date: {datetime.date.today()}; machine: {machine()}")


if __name__ == "__main__":
    main()
