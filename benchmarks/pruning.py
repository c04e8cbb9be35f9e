"""Hyperband pruning against no pruning: the best accuracy reached, and the epochs spent.

The same `tuner sweep` (the digits MLP, the default search space and sampler, a fixed
number of trials and epochs) with `pruner=hyperband` and with `pruner=none`, for several
seeds; each seed gives both settings the same sampler seed and trial seeds. Epochs spent
are the epochs every trial trained (its per-epoch reports), summed over the study.

Target: the same best val_acc (within 0.5 points, median over seeds) for at most 40% of
the epochs.

    python benchmarks/pruning.py [--seeds 5] [--trials 30] [--epochs 10] \
        [--set pruner.reduction_factor=4 ...]

``--set`` adds overrides to the hyperband side only, for trying its settings against
the same no-pruning baseline.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys

import optuna
from common import machine, run_sweep
from optuna.trial import TrialState

PRUNERS = ("none", "hyperband")


def one_sweep(pruner: str, seed: int, trials: int, epochs: int, extra: list[str]
              ) -> tuple[float, int, float]:
    """The best value, the epochs trained in all, the wall seconds."""
    sweep = run_sweep(f"pruner={pruner}", f"seed={seed}", f"n_trials={trials}",
                      f"trainer.max_epochs={epochs}", "tracking.report=false", *extra)
    study = sweep.study
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    epochs_spent = sum(len(t.intermediate_values) for t in finished)
    if not any(t.state == TrialState.COMPLETE for t in finished):
        sys.exit(f"pruner={pruner} seed={seed} {' '.join(extra)}: no trial trained to the end")
    return study.best_value, epochs_spent, sweep.wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="overrides for the hyperband side, e.g. pruner.reduction_factor=4")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    best: dict[str, list[float]] = {p: [] for p in PRUNERS}
    spent: dict[str, list[int]] = {p: [] for p in PRUNERS}
    wall: dict[str, list[float]] = {p: [] for p in PRUNERS}
    for seed in range(args.seeds):
        line = []
        for pruner in (PRUNERS if seed % 2 == 0 else PRUNERS[::-1]):
            extra = args.set if pruner == "hyperband" else []
            b, e, w = one_sweep(pruner, seed, args.trials, args.epochs, extra)
            best[pruner].append(b)
            spent[pruner].append(e)
            wall[pruner].append(w)
            line.append(f"{pruner}: best {b:.4f}, {e} epochs, {w:.1f} s")
        print(f"seed {seed}: " + "; ".join(sorted(line)), flush=True)
    med = {p: (statistics.median(best[p]), statistics.median(spent[p]),
               statistics.median(wall[p])) for p in PRUNERS}
    print(f"{args.trials} trials x up to {args.epochs} epochs, digits MLP, default space; "
          f"medians of {args.seeds} seeds" + (f"; hyperband with {' '.join(args.set)}"
                                              if args.set else ""))
    for p in PRUNERS:
        print(f"  pruner={p}: best val_acc {med[p][0]:.4f}, {med[p][1]:.0f} epochs, "
              f"{med[p][2]:.1f} s per sweep")
    gap = (med["none"][0] - med["hyperband"][0]) * 100
    print(f"hyperband: {gap:+.2f} points below no pruning (target <= 0.5), "
          f"{med['hyperband'][1] / med['none'][1]:.0%} of the epochs (target <= 40%), "
          f"{med['hyperband'][2] / med['none'][2]:.0%} of the wall time")
    print(f"date: {datetime.date.today()}; machine: {machine()}")


if __name__ == "__main__":
    main()
