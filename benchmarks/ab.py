"""The same `tuner sweep` command from two checkouts of tuner, alternating: medians and
the ratio, for judging a change to tuner itself.

    git worktree add /tmp/before HEAD~1        # the code before the change
    python benchmarks/ab.py --before /tmp/before [--runs 5] -- n_trials=5 trainer.max_epochs=1

Each run starts in a new empty folder with PYTHONPATH pointing at the checkout, so both
sides pay a first sweep's costs (store creation, preflight, imports).
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine

HERE = Path(__file__).resolve().parents[1]


def link_config(checkout: Path) -> list[Path]:
    """conf/ and dashboards/ are mapped into the package by the install; a checkout on
    PYTHONPATH finds them through links in tuner/, which main() removes again (left
    there, they would change what a later `pip install -e` maps)."""
    made = []
    for name in ("conf", "dashboards"):
        link = checkout / "tuner" / name
        if not link.exists():
            link.symlink_to(Path("..") / name)
            made.append(link)
    return made


def one_run(checkout: Path, overrides: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    with tempfile.TemporaryDirectory(prefix="tuner-bench-") as cwd:
        start = time.perf_counter()
        # `python -m tuner`, not the installed script: each checkout runs its own entry point.
        result = subprocess.run([sys.executable, "-m", "tuner", "sweep", *overrides], cwd=cwd,
                                env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{checkout} failed:\n{result.stdout}\n{result.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, default=HERE)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    times: dict[str, list[float]] = {"before": [], "after": []}
    links = [*link_config(args.before.resolve()), *link_config(args.after.resolve())]
    try:
        for run in range(args.runs):
            order = ("before", "after") if run % 2 == 0 else ("after", "before")
            for side in order:
                times[side].append(one_run(getattr(args, side).resolve(), args.overrides))
            print(f"run {run + 1}: before {times['before'][-1]:.2f} s, "
                  f"after {times['after'][-1]:.2f} s", flush=True)
    finally:
        for link in links:
            link.unlink()
    before, after = (statistics.median(times[s]) for s in ("before", "after"))
    print(f"`tuner sweep {' '.join(args.overrides)}`, medians of {args.runs}: before "
          f"{before:.2f} s, after {after:.2f} s (before/after {before / after:.2f}x)")
    print(f"date: {datetime.date.today()}; machine: {machine()}")


if __name__ == "__main__":
    main()
