"""What tuner itself costs per trial, and how that grows with the number of trials.

A sweep of a module with nothing to train (benchmarks/noop.py: one row, no backward, no
optimizer step), so a trial's time is the platform's: sampling (TPE), the study's
storage, the claim and lease, the MLflow run with its params, config and metrics, the
weights kept when a trial beats the best (the one model export comes at the end),
building the Trainer, and handing the trial to the slot and back.

Reports the median time per trial over the whole sweep (from the first trial's start to
the last one's end, divided by the trials) and per block of trials, so that growth with
the study's size shows, plus the whole command.

With ``--slots auto`` (one slot per core) trials overlap, and a trial's share of the
span (from one trial's start to the next one's) is the cost at the sweep's throughput.

    python benchmarks/scale.py [--trials 1000] [--block 100] [--slots 1|auto]
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
from pathlib import Path

import optuna
from common import machine, run_sweep

HERE = Path(__file__).resolve().parent
NOOP = ("--config-dir", str(HERE / "conf"), "model=noop", "data=noop", "search=noop",
        "metric=score", "direction=minimize", "trainer.max_epochs=1", "pruner=none",
        "tracking.report=false")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--block", type=int, default=100)
    parser.add_argument("--sampler", default="tpe")
    parser.add_argument("--slots", default="1", help="slots: 1 (default) or auto")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p)}
    sweep = run_sweep(*NOOP, f"n_trials={args.trials}", f"sampler={args.sampler}",
                      f"slots={args.slots}", study="noop-noop", env=env)
    wall = sweep.wall
    trials = sorted(sweep.study.trials, key=lambda t: t.number)
    # Per trial: from its start to the next trial's start (the last: to its own end), so
    # the gap between trials (telling Optuna, ending the run, the claim) is counted too.
    starts = [t.datetime_start for t in trials]
    ends = [*starts[1:], trials[-1].datetime_complete]
    per_trial = [(b - a).total_seconds() * 1000 for a, b in zip(starts, ends, strict=True)]
    span = (max(t.datetime_complete for t in trials)
            - min(t.datetime_start for t in trials)).total_seconds()
    print(f"{len(trials)} trials, sampler={args.sampler}, slots={args.slots}: "
          f"whole command {wall:.1f} s; "
          f"{span / len(trials) * 1000:.1f} ms per trial on average once running; "
          f"median {statistics.median(per_trial):.1f} ms")
    for first in range(0, len(per_trial), args.block):
        block = per_trial[first:first + args.block]
        print(f"  trials {first:4d}-{first + len(block) - 1:4d}: median "
              f"{statistics.median(block):.1f} ms, p90 "
              f"{statistics.quantiles(block, n=10)[-1]:.1f} ms")
    print(f"date: {datetime.date.today()}; machine: {machine()}")


if __name__ == "__main__":
    main()
