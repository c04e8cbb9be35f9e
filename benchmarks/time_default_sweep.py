"""Time `tuner sweep` with no arguments, the way the README's first command runs it.

Each run starts in a new empty folder, so each pays what a first sweep pays (imports,
creating the MLflow store, the preflight, 30 trials, the report). Prints every wall
time, the best value and how many trials completed and were pruned, the medians, and
the machine it ran on.

With ``--against OVERRIDE`` (e.g. ``--against slots=1``) each run times the plain
command and the command with that override, alternating which goes first, and prints
both medians and their ratio: the two sides in the same run, on the same machine state.
``--common OVERRIDE`` (repeatable) goes to both sides, e.g. to time the model export at
the end of a short one-slot sweep:

    python benchmarks/time_default_sweep.py [--runs 3] [--against slots=1]
    python benchmarks/time_default_sweep.py --against tracking.log_models=false \
        --common n_trials=3 --common trainer.max_epochs=2 --common slots=1 \
        --common tracking.report=false
"""

from __future__ import annotations

import argparse
import datetime
import statistics

from common import machine, run_sweep
from optuna.trial import TrialState


def one_sweep(overrides: tuple[str, ...]) -> tuple[float, float, str]:
    """Wall seconds, the best value and a 'N complete, M pruned' summary."""
    sweep = run_sweep(*overrides)
    study = sweep.study
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    pruned = study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
    summary = (f"{len(complete)} complete, {len(pruned)} pruned, best {study.best_value:.4f} "
               f"(trial {study.best_trial.number})")
    return sweep.wall, study.best_value, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--against", action="append", default=[], metavar="OVERRIDE",
                        help="also time the command with this override (repeatable)")
    parser.add_argument("--common", action="append", default=[], metavar="OVERRIDE",
                        help="an override for both sides (repeatable)")
    args = parser.parse_args()
    common = tuple(args.common)
    sides = {" ".join(("tuner sweep", *common)): common}
    if args.against:
        sides[" ".join(("tuner sweep", *common, *args.against))] = (*common, *args.against)
    walls: dict[str, list[float]] = {name: [] for name in sides}
    bests: dict[str, list[float]] = {name: [] for name in sides}
    for i in range(args.runs):
        order = list(sides) if i % 2 == 0 else list(reversed(sides))
        for name in order:
            wall, best, summary = one_sweep(sides[name])
            walls[name].append(wall)
            bests[name].append(best)
            print(f"run {i + 1} {name}: {wall:.1f} s ({summary})", flush=True)
    for name in sides:
        print(f"{name}: median {statistics.median(walls[name]):.1f} s, median best "
              f"{statistics.median(bests[name]):.4f} over {args.runs} run(s)")
    if args.against:
        plain, other = (statistics.median(walls[name]) for name in sides)
        print(f"with {' '.join(args.against)} / plain: {other / plain:.2f}x the wall time")
    print(f"date: {datetime.date.today()}; machine: {machine()}")


if __name__ == "__main__":
    main()
