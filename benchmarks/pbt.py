"""Population-based training against tuner's default search at the same compute in epochs.

    python benchmarks/pbt.py [--task gpt|digits] [--seeds 5] [--population 8]
                             [--epochs 8] [--interval 2]

Four ways to spend ``population x epochs`` epochs, each with a constant learning rate
(so a schedule can only come from PBT), and one with a cosine schedule set by hand:

- ``pbt``: strategy=pbt, the population over ``epochs / interval`` generations;
- ``tpe``: tuner's default search (TPE and the task's pruner), ``population`` trials of
  ``epochs`` (the pruner stops some early, so it spends at most that many epochs);
- ``random``: random search, same trials, no pruner;
- ``tpe+cosine``: TPE and the pruner with a cosine schedule fixed: what a hand-set
  schedule gives, so the figure says what PBT adds over one.

Tasks: ``gpt``, the character GPT on the bundled Shakespeare (``experiment=shakespeare``:
val_loss, minimised; hyperband pruner), and ``digits``, the MLP on scikit-learn's digits
(val_acc, maximised; median pruner), which most configurations learn to its ceiling.

Per seed: the best value reached and the seconds the command took; then, for each
baseline, the seconds it took (from its first trial's start) to reach its own best, and
the seconds PBT took to reach that value (or "never"). Medians over the seeds.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys

from common import machine, run_sweep

COMMON = ("tracking.report=false", "tracking.log_models=false",
          "tracking.register_champion=false", "slots=2")


TASKS = {  # the task's overrides; how a schedule is fixed (the search has it, or not)
    "digits": ([], "search.model.lr_schedule.choices=[{}]"),
    "gpt": (["experiment=shakespeare"], "model.lr_schedule={}"),
}


def arms(task: str, population: int, epochs: int, interval: int) -> dict[str, list[str]]:
    base, schedule = TASKS[task]
    constant, cosine = schedule.format("constant"), schedule.format("cosine")
    budget = [*base, f"n_trials={population}", f"trainer.max_epochs={epochs}"]
    return {
        "pbt": [*base, "strategy=pbt", f"strategy.population={population}",
                f"strategy.interval={interval}", f"trainer.max_epochs={epochs}", constant],
        "tpe": [*budget, constant],
        "random": [*budget, constant, "sampler=random", "pruner=none"],
        "tpe+cosine": [*budget, cosine],
    }


def time_to(study, target: float) -> float | None:
    """Seconds from the study's first trial start until a trial first reached ``target``
    (as good or better, in the study's direction)."""
    sign = 1 if study.direction.name == "MAXIMIZE" else -1
    start = min(t.datetime_start for t in study.trials if t.datetime_start is not None)
    reached = [t.datetime_complete for t in study.trials
               if t.values is not None and sign * t.values[0] >= sign * target - 1e-12]
    return None if not reached else (min(reached) - start).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", choices=sorted(TASKS), default="gpt")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--interval", type=int, default=2)
    args = parser.parse_args()
    study_name = {"digits": "digits-mlp", "gpt": "shakespeare-gpt"}[args.task]
    best: dict[str, list[float]] = {}
    wall: dict[str, list[float]] = {}
    own: dict[str, list[float]] = {}  # a baseline's seconds to its own best
    reach: dict[str, list[float | None]] = {}  # PBT's seconds to that baseline's best
    for seed in range(args.seeds):
        found = {}
        for name, overrides in arms(args.task, args.population, args.epochs,
                                    args.interval).items():
            sweep = run_sweep(*COMMON, f"seed={seed}", *overrides, study=study_name)
            found[name] = sweep.study
            best.setdefault(name, []).append(sweep.study.best_value)
            wall.setdefault(name, []).append(sweep.wall)
            print(f"seed {seed} {name}: best {sweep.study.best_value:.4f} in {sweep.wall:.1f} s",
                  file=sys.stderr, flush=True)
        for name in ("tpe", "random", "tpe+cosine"):
            target = found[name].best_value
            own.setdefault(name, []).append(time_to(found[name], target))
            reach.setdefault(name, []).append(time_to(found["pbt"], target))

    metric = found["pbt"].metric_names[0] if found["pbt"].metric_names else "value"
    print(f"{datetime.date.today()}, {machine()}")
    print(f"{args.task} ({study_name}), {args.population} x {args.epochs} epochs per arm, "
          f"PBT interval {args.interval}, median of {args.seeds} seeds")
    print(f"| arm | best {metric} (median) | per seed | command s (median) |")
    print("| --- | --- | --- | --- |")
    for name in best:
        seeds = ", ".join(f"{v:.4f}" for v in best[name])
        print(f"| {name} | {statistics.median(best[name]):.4f} | {seeds} | "
              f"{statistics.median(wall[name]):.1f} |")
    print()
    for name, times in reach.items():
        got = [t for t in times if t is not None]
        said = f"in {statistics.median(got):.1f} s median" if got else "never"
        print(f"PBT reached {name}'s best in {len(got)} of {len(times)} seeds ({said}); "
              f"{name} itself took {statistics.median(own[name]):.1f} s median")


if __name__ == "__main__":
    main()
