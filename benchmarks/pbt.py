"""Population-based training against tuner's default search at the same compute in epochs.

    python benchmarks/pbt.py [--seeds 5] [--population 8] [--epochs 10] [--interval 2]

Four ways to spend ``population x epochs`` epochs on the digits MLP, each with a
constant learning rate in its space (so a schedule can only come from PBT), and one with
a cosine schedule set by hand:

- ``pbt``: strategy=pbt, the population over ``epochs / interval`` generations;
- ``tpe``: tuner's default (TPE + median pruner), ``population`` trials of ``epochs``
  (the pruner stops some early, so it spends at most that many epochs);
- ``random``: random search, same trials, no pruner;
- ``tpe+cosine``: TPE + pruner with ``lr_schedule=cosine`` fixed: what a hand-set
  schedule gives, so the figure says what PBT adds over one.

Per seed: the best validation accuracy reached and the seconds the command took; then
for PBT, the seconds from its first trial's start until it first reached each
baseline's best of the same seed (or "never"). Medians over the seeds.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys

from common import machine, run_sweep

COMMON = ("tracking.report=false", "tracking.log_models=false",
          "tracking.register_champion=false", "slots=2")


def arms(population: int, epochs: int, interval: int) -> dict[str, list[str]]:
    constant = "search.model.lr_schedule.choices=[constant]"
    budget = [f"n_trials={population}", f"trainer.max_epochs={epochs}"]
    return {
        "pbt": ["strategy=pbt", f"strategy.population={population}",
                f"strategy.interval={interval}", f"trainer.max_epochs={epochs}", constant],
        "tpe": [*budget, constant],
        "random": [*budget, constant, "sampler=random", "pruner=none"],
        "tpe+cosine": [*budget, "search.model.lr_schedule.choices=[cosine]"],
    }


def time_to(study, target: float) -> float | None:
    """Seconds from the study's first trial start until a trial first reached ``target``."""
    trials = [t for t in study.trials if t.datetime_complete is not None]
    start = min(t.datetime_start for t in study.trials if t.datetime_start is not None)
    reached = [t.datetime_complete for t in trials
               if t.values is not None and t.values[0] >= target]
    return None if not reached else (min(reached) - start).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--interval", type=int, default=2)
    args = parser.parse_args()
    best: dict[str, list[float]] = {}
    wall: dict[str, list[float]] = {}
    reach: dict[str, list[float | None]] = {}
    for seed in range(args.seeds):
        found = {}
        for name, overrides in arms(args.population, args.epochs, args.interval).items():
            sweep = run_sweep(*COMMON, f"seed={seed}", *overrides)
            found[name] = sweep.study
            best.setdefault(name, []).append(sweep.study.best_value)
            wall.setdefault(name, []).append(sweep.wall)
            print(f"seed {seed} {name}: best {sweep.study.best_value:.4f} in {sweep.wall:.1f} s",
                  file=sys.stderr, flush=True)
        for name in ("tpe", "random", "tpe+cosine"):
            reach.setdefault(name, []).append(time_to(found["pbt"], found[name].best_value))

    print(f"{datetime.date.today()}, {machine()}")
    print(f"digits MLP, {args.population} x {args.epochs} epochs per arm, "
          f"PBT interval {args.interval}, median of {args.seeds} seeds")
    print("| arm | best val_acc (median) | per seed | command s (median) |")
    print("| --- | --- | --- | --- |")
    for name in best:
        seeds = ", ".join(f"{v:.4f}" for v in best[name])
        print(f"| {name} | {statistics.median(best[name]):.4f} | {seeds} | "
              f"{statistics.median(wall[name]):.1f} |")
    print()
    for name, times in reach.items():
        got = [t for t in times if t is not None]
        said = f"{statistics.median(got):.1f} s median" if got else "never"
        print(f"PBT reached {name}'s best in {len(got)} of {len(times)} seeds ({said})")


if __name__ == "__main__":
    main()
