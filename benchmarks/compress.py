"""What compression buys on this machine: size, latency and accuracy, and a Pareto study.

    python benchmarks/compress.py [--part models|front|both] [--seeds 3] [--trials 30]

Part ``models``: the built-in MLP and CNN on digits and the character GPT on Shakespeare,
each trained once from its config's defaults (the same seed for every method), then
measured by tuner's own code (tuner.trial.measure) as a sweep measures a trial: float
against int8, prune (0.5, unstructured) and QAT (trained again, fake-quantized from
epoch 1). Size: the state dict as torch.save writes it; latency: the median of 200
forward passes of one example on one thread after 20 warm-up passes. Ratios are float
over compressed (above 1: compression wins), in the same run.

Part ``front``: two-objective studies (TPE, tuner's default sampler) of ``--trials``
trials of the MLP on digits, per seed and per cost (latency, size): the float study
optimises the float model's accuracy and cost (its models are measured, not served
compressed); the int8 study the int8 model's; the searched study the compressed model's
with ``compress.method`` searched among none, int8 and prune (and the amount). For
accuracy levels, the least cost a study's front reaches at that accuracy or better;
medians over seeds ("not reached" where fewer than half the seeds reach the level).
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import tempfile

from common import machine, run_sweep

FRONT_COMMON = ("tracking.report=false", "tracking.log_models=false",
                "tracking.register_champion=false", "slots=2", "pruner=none",
                "trainer.max_epochs=8", "compress=int8", "compress.latency_runs=50")
SEARCHED = ("+search.compress.method={type:categorical,choices:[none,int8,prune]}",
            "+search.compress.amount={type:float,low:0.2,high:0.8}")
MODELS = {  # name -> overrides; each model trains with its config's own defaults
    "mlp (digits)": ["trainer.max_epochs=10"],
    "cnn (digits)": ["model=cnn", "search=cnn", "trainer.max_epochs=10"],
    "gpt (shakespeare)": ["experiment=shakespeare", "trainer.max_epochs=8"],
}
METHODS = ("int8", "prune", "qat")
LEVELS = (0.90, 0.95, 0.97)


def trained(overrides: list[str], method: str):
    """The model of ``overrides`` trained (with QAT when ``method`` is qat), its config,
    and its data."""
    import lightning.pytorch as pl

    from tuner.config.compose import compose_config
    from tuner.core.quiet import quiet_lightning
    from tuner.trial.build import build_objects, build_trainer
    from tuner.trial.compress import QuantizationAwareTraining

    quiet_lightning()
    with tempfile.TemporaryDirectory() as run_dir:
        cfg = compose_config([f"run_dir={run_dir}", *overrides, f"compress={method}",
                              "compress.latency_runs=200", "compress.latency_warmup=20"]).cfg
    pl.seed_everything(0, verbose=False)
    datamodule, module = build_objects(cfg)
    callbacks = [QuantizationAwareTraining(1)] if method == "qat" else []
    build_trainer(cfg.trainer, callbacks=callbacks, enable_checkpointing=False).fit(
        module, datamodule=datamodule)
    return cfg, module, datamodule


def models_part() -> None:
    from tuner.trial.measure import measure

    print("| model | method | float MB | MB | size ratio | float ms | ms | latency ratio "
          "| metric | float | compressed | change |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |")
    for name, overrides in MODELS.items():
        cfg = module = datamodule = None
        for method in METHODS:
            if method == "qat" or module is None:  # QAT trains its own model
                cfg, module, datamodule = trained(overrides, method)
            cfg.compress.method = method
            figures = measure(cfg, module, datamodule)
            metric = str(cfg.metric)
            small = figures[f"compressed/{metric}"]
            full = float(module.trainer.callback_metrics[metric])
            print(f"| {name} | {method} | {figures['model/float_size_mb']:.3f} | "
                  f"{figures['model/size_mb']:.3f} | "
                  f"{figures['model/float_size_mb'] / figures['model/size_mb']:.2f}x | "
                  f"{figures['model/float_latency_ms']:.3f} | "
                  f"{figures['model/latency_ms']:.3f} | "
                  f"{figures['model/float_latency_ms'] / figures['model/latency_ms']:.2f}x | "
                  f"{metric} | {full:.4f} | {small:.4f} | {round(small - full, 4) + 0.0:+.4f} |",
                  flush=True)


def least_at(points: list[tuple[float, float]], level: float) -> float | None:
    """The least cost (latency or size) among points whose accuracy reaches ``level``."""
    costs = [cost for accuracy, cost in points if accuracy >= level]
    return min(costs) if costs else None


def front_part(seeds: int, trials: int) -> None:
    arms = {  # arm -> (the study's accuracy objective, the overrides that make it)
        "float": ("val_acc", ()),
        "int8": ("compressed/val_acc", ()),
        "searched": ("compressed/val_acc", SEARCHED),
    }
    costs = {"latency": ("model/latency_ms", "ms"), "size": ("model/size_mb", "MB")}
    found: dict[tuple[str, str], list[dict[float, float | None]]] = {}
    walls: dict[str, list[float]] = {arm: [] for arm in arms}
    for seed in range(seeds):
        for what, (cost, _) in costs.items():
            for arm, (accuracy, searched) in arms.items():
                # The float study optimises the float model's cost (model/float_...).
                objective = cost.replace("model/", "model/float_") if arm == "float" else cost
                result = run_sweep(*FRONT_COMMON, *searched, f"seed={seed}",
                                   f"n_trials={trials}", f"metric=[{accuracy},{objective}]",
                                   "direction=[maximize,minimize]", study="digits-mlp")
                points = [(t.values[0], t.values[1]) for t in result.study.best_trials]
                found.setdefault((what, arm), []).append(
                    {level: least_at(points, level) for level in LEVELS})
                walls[arm].append(result.wall)
                print(f"seed {seed} {what:>7} {arm:>8}: a front of {len(points)}, "
                      f"{result.wall:.1f} s", flush=True)
    print("\n| cost | accuracy at least | float study | int8 study | saved | method searched "
          "| saved |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for what, (_, unit) in costs.items():
        for level in LEVELS:
            full, int8, searched = (_median([f[level] for f in found[(what, arm)]])
                                    for arm in arms)
            print(f"| {what} | {level:.2f} | {_shown(full, unit)} | {_shown(int8, unit)} | "
                  f"{_saved(full, int8)} | {_shown(searched, unit)} | {_saved(full, searched)} |")
    for arm, times in walls.items():
        print(f"{arm}: median {statistics.median(times):.1f} s per study")


def _saved(full: float | None, small: float | None) -> str:
    if full is None or small is None:
        return ""
    if small <= full:
        return f"{(1 - small / full) * 100:.0f}% less"
    return f"{(small / full - 1) * 100:.0f}% more"


def _median(values: list[float | None]) -> float | None:
    reached = [v for v in values if v is not None]
    return statistics.median(reached) if len(reached) * 2 > len(values) else None


def _shown(value: float | None, unit: str) -> str:
    return "not reached" if value is None else f"{value:.4g} {unit}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("models", "front", "both"), default="both")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=30)
    args = parser.parse_args()
    print(f"{datetime.date.today()} on {machine()}\n")
    if args.part in ("models", "both"):
        models_part()
    if args.part in ("front", "both"):
        print()
        front_part(args.seeds, args.trials)


if __name__ == "__main__":
    main()
