"""Trials per minute with `slots=2` against `slots=1`, on the same sweep.

A CPU-bound sweep of the digits MLP at fixed epochs, run as `tuner sweep` in a fresh
folder per run, alternating the two settings so that both see the same machine state.

Every trial does the same work: no pruning, and the keys that set a trial's cost
(optimizer, width, batch size, gradient accumulation) are taken out of the search space,
which keeps learning rate, its schedule, weight decay, dropout and clipping. With the
default space, the two settings sample different trials (each slot draws its own), and
a few more small batches or wide layers on one side would be measured as a speed-up or
a slow-down; `--default-space` runs it anyway. Reports per run and as medians:

- wall: the whole command (imports, preflight, stores, every trial, report);
- trials/min: finished trials over the span from the first trial's start to the last
  trial's end (read back from the study), i.e. the rate once the slots are running;
- trial s: the median time from a trial's start to its end (training, model export,
  MLflow records), which contention between the slots stretches;
- gap s: the median time a slot spends between the end of one trial and the start of
  its next (the claim: budget count and sampling under the study lock).

    python benchmarks/slots.py [--runs 3] [--trials 40] [--epochs 10] [--default-space]
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import statistics
from collections import defaultdict
from dataclasses import dataclass

import optuna
from common import machine, run_sweep


@dataclass(frozen=True)
class Run:
    wall: float
    rate: float
    trial: float
    gap: float


# Hydra's `~key` deletes a key: these searched keys fall back to the model's defaults.
FIXED_WORK = ("~search.model.optimizer", "~search.model.momentum", "~search.model.width",
              "~search.data", "~search.trainer.accumulate_grad_batches")


def one_run(slots: int, trials: int, epochs: int, space: tuple[str, ...]) -> Run:
    sweep = run_sweep(f"slots={slots}", f"n_trials={trials}", f"trainer.max_epochs={epochs}",
                      "pruner=none", "tracking.report=false", *space)
    wall = sweep.wall
    done = [t for t in sweep.study.trials
            if t.datetime_complete is not None and t.datetime_start is not None]
    span = (max(t.datetime_complete for t in done)
            - min(t.datetime_start for t in done)).total_seconds()
    durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in done]
    by_slot: dict[str, list] = defaultdict(list)
    for t in done:
        by_slot[t.user_attrs.get("owner", "")].append(t)
    gaps = [(b.datetime_start - a.datetime_complete).total_seconds()
            for ts in by_slot.values()
            for a, b in itertools.pairwise(sorted(ts, key=lambda t: t.datetime_start))]
    return Run(wall, len(done) / span * 60, statistics.median(durations),
               statistics.median(gaps) if gaps else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--default-space", action="store_true",
                        help="search the default space (trials differ in cost)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = () if args.default_space else FIXED_WORK
    results: dict[int, list[Run]] = {1: [], 2: []}
    for run in range(args.runs):
        for slots in (1, 2):
            r = one_run(slots, args.trials, args.epochs, space)
            results[slots].append(r)
            print(f"run {run + 1} slots={slots}: wall {r.wall:.1f} s, "
                  f"{r.rate:.1f} trials/min, trial {r.trial:.3f} s, gap {r.gap:.3f} s",
                  flush=True)

    def median(field: str) -> dict[int, float]:
        return {w: statistics.median(getattr(r, field) for r in rs) for w, rs in results.items()}

    wall, rate, trial, gap = median("wall"), median("rate"), median("trial"), median("gap")
    print(f"median wall: slots=1 {wall[1]:.1f} s, slots=2 {wall[2]:.1f} s "
          f"(slots=1 / slots=2: {wall[1] / wall[2]:.2f}x)")
    print(f"median trials/min: slots=1 {rate[1]:.1f}, slots=2 {rate[2]:.1f} "
          f"(ratio {rate[2] / rate[1]:.2f}x)")
    print(f"median trial: slots=1 {trial[1]:.3f} s, slots=2 {trial[2]:.3f} s; "
          f"median gap between a slot's trials: slots=1 {gap[1]:.3f} s, "
          f"slots=2 {gap[2]:.3f} s")
    print(f"{args.trials} trials x {args.epochs} epochs, digits MLP, pruner=none, "
          + ("default search space" if args.default_space else "fixed work per trial"))
    print(f"date: {datetime.date.today()}; machine: {machine()}")


if __name__ == "__main__":
    main()
