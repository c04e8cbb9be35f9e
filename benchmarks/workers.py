"""Trials per minute with `workers=2` against `workers=1`, on the same sweep.

A CPU-bound sweep of the digits MLP at fixed epochs (no pruning, so every trial does
the same work), run as `tuner sweep` in a fresh folder per run, alternating the two
settings so that both see the same machine state. Reports per run and as medians:

- wall: the whole command (imports, preflight, stores, every trial, report);
- trials/min: finished trials over the span from the first trial's start to the last
  trial's end (read back from the study), i.e. the rate once the slots are running.

    python benchmarks/workers.py [--runs 3] [--trials 40] [--epochs 10]
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from common import machine, tuner_command
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend


def one_run(workers: int, trials: int, epochs: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="tuner-bench-") as cwd:
        start = time.perf_counter()
        result = subprocess.run(
            [*tuner_command(), "sweep", f"workers={workers}", f"n_trials={trials}",
             f"trainer.max_epochs={epochs}", "pruner=none", "tracking.report=false"],
            cwd=cwd, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if result.returncode != 0:
            sys.exit(f"workers={workers} failed:\n{result.stdout}\n{result.stderr}")
        storage = JournalStorage(JournalFileBackend(str(Path(cwd) / "runs/optuna.journal")))
        done = [t for t in optuna.load_study(study_name="digits-mlp", storage=storage).trials
                if t.datetime_complete is not None and t.datetime_start is not None]
        span = (max(t.datetime_complete for t in done)
                - min(t.datetime_start for t in done)).total_seconds()
    return wall, len(done) / span * 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    results: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
    for run in range(args.runs):
        for workers in (1, 2):
            wall, rate = one_run(workers, args.trials, args.epochs)
            results[workers].append((wall, rate))
            print(f"run {run + 1} workers={workers}: wall {wall:.1f} s, "
                  f"{rate:.1f} trials/min", flush=True)
    wall = {w: statistics.median(r[0] for r in rs) for w, rs in results.items()}
    rate = {w: statistics.median(r[1] for r in rs) for w, rs in results.items()}
    print(f"median wall: workers=1 {wall[1]:.1f} s, workers=2 {wall[2]:.1f} s "
          f"(workers=1 / workers=2: {wall[1] / wall[2]:.2f}x)")
    print(f"median trials/min: workers=1 {rate[1]:.1f}, workers=2 {rate[2]:.1f} "
          f"(ratio {rate[2] / rate[1]:.2f}x)")
    print(f"{args.trials} trials x {args.epochs} epochs, digits MLP, pruner=none")
    print(f"date: {datetime.date.today()}; machine: {machine()}")


if __name__ == "__main__":
    main()
