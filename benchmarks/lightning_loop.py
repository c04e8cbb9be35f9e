"""Lightning's own share of a trial: one trial of the digits MLP trained by
`Trainer.fit` with tuner's module and trainer settings, against the raw loop of
benchmarks/by_hand.py on the same trial, in one process, alternating.

No sweep, no slot, no storage, no MLflow: what is left between the two is Lightning's
loop (automatic optimization, hooks, the scheduler and clipping calls it makes per step)
and tuner's module (its per-epoch means). It bounds from below what
benchmarks/overhead.py can show for `tuner sweep` against the raw loop, since every
trial trains through `Trainer.fit` (issue 13, decision 4).

    python benchmarks/lightning_loop.py [--runs 5] [--epochs 10] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import tempfile
import time

import lightning.pytorch as pl
import torch
from by_hand import digits, raw_trial
from common import machine

from tuner.config.compose import compose_config
from tuner.trial.build import build_objects, build_trainer, prepare_process

# One trial of conf/search/mlp.yaml, written out for both sides.
TRIAL = {"optimizer": "adam", "lr": 0.01, "momentum": 0.0, "weight_decay": 1e-4,
         "dropout": 0.2, "width": 128, "lr_schedule": "cosine", "clip": 1.0, "accumulate": 1}


def overrides(epochs: int, batch_size: int) -> list[str]:
    p = TRIAL
    return [f"model.optimizer={p['optimizer']}", f"model.lr={p['lr']}",
            f"model.weight_decay={p['weight_decay']}", f"model.dropout={p['dropout']}",
            f"model.width={p['width']}", f"model.lr_schedule={p['lr_schedule']}",
            f"data.batch_size={batch_size}", f"trainer.gradient_clip_val={p['clip']}",
            f"trainer.accumulate_grad_batches={p['accumulate']}",
            f"trainer.max_epochs={epochs}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads for both sides (0: torch's default)")
    args = parser.parse_args()
    prepare_process(args.threads or torch.get_num_threads())
    folder = tempfile.mkdtemp(prefix="tuner-loop-")
    cfg = compose_config([f"run_dir={folder}", *overrides(args.epochs, args.batch_size)]).cfg
    data = digits()
    trial = {**TRIAL, "batch_size": args.batch_size}

    def lightning_fit() -> float:
        pl.seed_everything(0, verbose=False)
        datamodule, module = build_objects(cfg)
        trainer = build_trainer(cfg.trainer, root_dir=folder)
        start = time.perf_counter()
        trainer.fit(module, datamodule=datamodule)
        return time.perf_counter() - start

    def raw() -> float:
        start = time.perf_counter()
        raw_trial(trial, 0, args.epochs, data)
        return time.perf_counter() - start

    lightning_fit(), raw()  # first uses: lazy imports, allocator warm-up
    fits, raws = [], []
    for i in range(args.runs):
        sides = [(lightning_fit, fits), (raw, raws)]
        for side, times in (sides if i % 2 == 0 else sides[::-1]):
            times.append(side())
    fit, bare = statistics.median(fits), statistics.median(raws)
    steps = -(-1437 // args.batch_size) * args.epochs  # 1437 training rows of digits
    print(f"one trial, digits MLP, batch {args.batch_size}, {args.epochs} epochs, "
          f"{torch.get_num_threads()} torch threads, medians of {args.runs}: "
          f"Trainer.fit {fit:.3f} s, raw loop {bare:.3f} s "
          f"(fit/raw {fit / bare:.2f}x; {(fit - bare) / steps * 1000:.2f} ms a step)")
    print(f"date: {datetime.date.today()}; machine: {machine()}")


if __name__ == "__main__":
    main()
