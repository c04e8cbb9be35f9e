"""The same `tuner sweep` command from two checkouts of tuner, alternating: medians and
the ratio, for judging a change to tuner itself.

    git worktree add /tmp/before HEAD~1        # the code before the change
    python benchmarks/ab.py --before /tmp/before [--runs 5] [--study digits-mlp] \
        -- n_trials=5 trainer.max_epochs=1

Each run starts in a new empty folder with the checkout first on PYTHONPATH, so both
sides pay a first sweep's costs (store creation, preflight, imports). The no-op model of
benchmarks/scale.py needs benchmarks/ on the path too (absolute paths: each run starts in
a new folder):

    PYTHONPATH=$PWD/benchmarks python benchmarks/ab.py --before /tmp/before \
        --study noop-noop -- --config-dir $PWD/benchmarks/conf model=noop data=noop search=noop \
        metric=score direction=minimize trainer.max_epochs=1 pruner=none \
        tracking.report=false n_trials=200

Reported: the whole command, and the median trial (its start to its end in the study,
read from the study ``--study`` names), which start-up noise does not dilute.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
from pathlib import Path

from common import machine, run_sweep

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


def one_run(checkout: Path, overrides: list[str], study: str) -> tuple[float, float]:
    """The whole command's seconds and the median trial's."""
    # `python -m tuner`, not the installed script: each checkout runs its own entry point.
    sweep = run_sweep(*overrides, study=study, command=[sys.executable, "-m", "tuner"],
                      env={**os.environ, "PYTHONPATH": os.pathsep.join(
                          p for p in (str(checkout), os.environ.get("PYTHONPATH")) if p)})
    trial = statistics.median((t.datetime_complete - t.datetime_start).total_seconds()
                              for t in sweep.study.trials if t.datetime_complete is not None)
    return sweep.wall, trial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, default=HERE)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--study", default="digits-mlp",
                        help="the study the command writes (for its trial times)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    times: dict[str, list[float]] = {"before": [], "after": []}
    trials: dict[str, list[float]] = {"before": [], "after": []}
    links = [*link_config(args.before.resolve()), *link_config(args.after.resolve())]
    try:
        for run in range(args.runs):
            order = ("before", "after") if run % 2 == 0 else ("after", "before")
            for side in order:
                wall, trial = one_run(getattr(args, side).resolve(), args.overrides, args.study)
                times[side].append(wall)
                trials[side].append(trial)
            print(f"run {run + 1}: before {times['before'][-1]:.2f} s (trial "
                  f"{trials['before'][-1]:.3f} s), after {times['after'][-1]:.2f} s (trial "
                  f"{trials['after'][-1]:.3f} s)", flush=True)
    finally:
        for link in links:
            link.unlink()
    before, after = (statistics.median(times[s]) for s in ("before", "after"))
    t_before, t_after = (statistics.median(trials[s]) for s in ("before", "after"))
    print(f"`tuner sweep {' '.join(args.overrides)}`, medians of {args.runs}: whole command "
          f"before {before:.2f} s, after {after:.2f} s (before/after {before / after:.2f}x); "
          f"median trial before {t_before:.3f} s, after {t_after:.3f} s "
          f"(before/after {t_before / t_after:.2f}x)")
    print(f"date: {datetime.date.today()}; machine: {machine()}")


if __name__ == "__main__":
    main()
