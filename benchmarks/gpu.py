"""tuner on one GPU: packed slots against one trial at a time, bf16 against fp32, and the
GPT example's tokens per second. Needs CUDA; run on a GPU machine.

1. packed: the digits MLP (fixed work per trial, as in benchmarks/slots.py) with
   `trainer=gpu` and `slots_per_gpu=1` against `slots_per_gpu=K`: trials per hour once
   the slots run, and the GPU's mean utilisation over that span (nvidia-smi, every
   0.25 s). Target: at least 3x the trials per hour.
2. precision: a larger character GPT (fixed architecture) trained with
   `trainer.precision=bf16-mixed` and `32-true`: training tokens per second per trial.
3. gpt: the GPT example as shipped (`experiment=shakespeare trainer=gpu`): tokens per
   second per trial (median), trials per hour.

    python benchmarks/gpu.py [--packed 8] [--trials 64] [--parts packed precision gpt]
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import optuna
from common import machine, run_sweep
from optuna.trial import FrozenTrial, TrialState
from slots import FIXED_WORK

CORPUS = Path(__file__).resolve().parents[1] / "tuner" / "data" / "corpus" / "shakespeare.txt"
SMI_TIME = "%Y/%m/%d %H:%M:%S.%f"


@dataclass
class Sweep:
    wall: float
    trials: list[FrozenTrial]
    util: float | None  # mean GPU utilisation (%) while trials ran
    memory: float | None  # peak GPU memory used (MiB) while trials ran

    @property
    def span(self) -> float:
        return (max(t.datetime_complete for t in self.trials)
                - min(t.datetime_start for t in self.trials)).total_seconds()

    @property
    def per_hour(self) -> float:
        return len(self.trials) / self.span * 3600

    @property
    def trial_seconds(self) -> float:
        return statistics.median((t.datetime_complete - t.datetime_start).total_seconds()
                                 for t in self.trials)


def sweep(study: str, *overrides: str) -> Sweep:
    smi = subprocess.Popen(
        ["nvidia-smi", "--query-gpu=timestamp,utilization.gpu,memory.used",
         "--format=csv,noheader,nounits", "-lms", "250"],
        stdout=subprocess.PIPE, text=True)
    try:
        run = run_sweep("tracking.report=false", *overrides, study=study)
        wall = run.wall
        trials = [t for t in run.study.trials
                  if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    finally:
        smi.terminate()
    samples = []
    for line in smi.communicate()[0].splitlines():
        try:
            stamp, util, memory = (part.strip() for part in line.split(","))
            samples.append((datetime.datetime.strptime(stamp, SMI_TIME), float(util),
                            float(memory)))
        except ValueError:
            continue
    first = min(t.datetime_start for t in trials)
    last = max(t.datetime_complete for t in trials)
    during = [(u, m) for s, u, m in samples if first <= s <= last]
    return Sweep(wall, trials, statistics.mean(u for u, _ in during) if during else None,
                 max(m for _, m in during) if during else None)


def fmt_util(s: Sweep) -> str:
    if s.util is None:
        return "GPU utilisation not sampled"
    return f"GPU {s.util:.0f}% busy on average, peak memory {s.memory:.0f} MiB"


def tokens_per_epoch(text: Path, block_size: int, val_fraction: float = 0.1) -> int:
    """Training tokens in one epoch of tuner.data.corpus over ``text``."""
    n_train = int(text.stat().st_size * (1 - val_fraction))
    return (n_train - 1) // block_size * block_size


def tokens_per_second(s: Sweep, block_size: int, text: Path = CORPUS) -> float:
    rates = [tokens_per_epoch(text, block_size) * len(t.intermediate_values)
             / (t.datetime_complete - t.datetime_start).total_seconds() for t in s.trials]
    return statistics.median(rates)


def packed(k: int, trials: int, epochs: int) -> None:
    common = ("trainer=gpu", f"n_trials={trials}", f"trainer.max_epochs={epochs}",
              "pruner=none", *FIXED_WORK)
    one = sweep("digits-mlp", *common, "slots_per_gpu=1")
    many = sweep("digits-mlp", *common, f"slots_per_gpu={k}")
    print(f"packed: {trials} trials x {epochs} epochs, digits MLP, bf16-mixed")
    for name, s in (("slots_per_gpu=1", one), (f"slots_per_gpu={k}", many)):
        print(f"  {name}: {s.per_hour:.0f} trials/hour, trial {s.trial_seconds:.2f} s, "
              f"whole command {s.wall:.1f} s; {fmt_util(s)}")
    print(f"  packed / one at a time: {many.per_hour / one.per_hour:.2f}x trials per hour "
          "(target >= 3x)", flush=True)


def precision(trials: int, epochs: int, repeats: int = 40) -> None:
    """The bundled text is 64 kB, a few steps per epoch for this model; the same text
    repeated ``repeats`` times gives each epoch enough steps to measure."""
    block = 256
    folder = Path(tempfile.mkdtemp(prefix="tuner-bench-text-"))
    text = folder / f"shakespeare-x{repeats}.txt"
    text.write_bytes(CORPUS.read_bytes() * repeats)
    common = (f"data.path={text}", "experiment=shakespeare", "trainer=gpu",
              f"n_trials={trials}", "pruner=none",
              f"trainer.max_epochs={epochs}", "~search.model.n_embd", "~search.model.n_layer",
              "model.n_embd=384", "model.n_layer=6", "model.n_head=6",
              f"data.block_size={block}", "data.batch_size=64")
    rates = {}
    for p in ("32-true", "bf16-mixed"):
        s = sweep("shakespeare-gpt", *common, f"trainer.precision={p}")
        rates[p] = tokens_per_second(s, block, text)
        print(f"precision {p}: GPT 6 layers x 384, block {block}, batch 64: "
              f"{rates[p]:,.0f} tokens/s per trial (median of {len(s.trials)}); {fmt_util(s)}")
    print(f"  bf16 / fp32: {rates['bf16-mixed'] / rates['32-true']:.2f}x", flush=True)
    text.unlink()
    folder.rmdir()


def gpt_example() -> None:
    s = sweep("shakespeare-gpt", "experiment=shakespeare", "trainer=gpu")
    print(f"gpt example (experiment=shakespeare trainer=gpu, {len(s.trials)} trials, "
          f"hyperband): {tokens_per_second(s, 64):,.0f} tokens/s per trial (median), "
          f"{s.per_hour:.0f} trials/hour, whole command {s.wall:.1f} s; {fmt_util(s)}",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packed", type=int, default=8, help="slots per GPU to compare")
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--parts", nargs="+", default=["packed", "precision", "gpt"],
                        choices=("packed", "precision", "gpt"))
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import torch

    if not torch.cuda.is_available():
        sys.exit("benchmarks/gpu.py needs a CUDA device")
    print(f"GPU: {torch.cuda.get_device_name()}", flush=True)
    if "packed" in args.parts:
        packed(args.packed, args.trials, args.epochs)
    if "precision" in args.parts:
        precision(2, 2)
    if "gpt" in args.parts:
        gpt_example()
    print(f"date: {datetime.date.today()}; machine: {machine()}")


if __name__ == "__main__":
    main()
