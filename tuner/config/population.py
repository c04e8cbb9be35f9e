"""The ``strategy`` group: ``search`` (sampler + pruner) or ``pbt`` (population-based training).

Under ``strategy=pbt`` a population of ``population`` members trains in segments of
``interval`` epochs, ``trainer.max_epochs / interval`` generations, one Optuna trial per
segment (tuner.study.population decides, tuner.launch.population claims). Its settings
are checked here, before anything is written: a population of at least 2, a quantile in
(0, 0.5], an interval that divides ``trainer.max_epochs``, factors above 0, something in
the search space to mutate, resume checkpoints on (PBT is built on them), and
``n_trials`` left alone (the population sets the budget: population x generations).
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import OmegaConf
from optuna.distributions import FloatDistribution

from tuner.config.compose import Composed
from tuner.config.space import SearchSpace
from tuner.core.errors import Problem

STRATEGIES = ("search", "pbt")


@dataclass(frozen=True)
class Population:
    """PBT's settings, checked."""

    size: int
    interval: int  # epochs per segment
    generations: int  # trainer.max_epochs / interval
    quantile: float
    resample: float
    factors: tuple[float, ...]
    mutable: tuple[str, ...]  # search-space keys that change between generations

    @property
    def segments(self) -> int:
        """The study's trials: one per member and generation."""
        return self.size * self.generations

    def epochs(self, generation: int) -> tuple[int, int]:
        """The epochs a segment of ``generation`` trains: [start, end)."""
        return generation * self.interval, (generation + 1) * self.interval


def population_of(composed: Composed, space: SearchSpace | None,
                  problems: list[Problem], machines: int = 1) -> Population | None:
    """The population ``strategy=pbt`` asks for (None for ``search``), with every problem
    of its settings added to ``problems``. ``machines``: the nodes one trial spans."""
    cfg = composed.cfg
    strategy = cfg.get("strategy") or {}
    name = strategy.get("name", "search")
    where = composed.locate("strategy.name")
    if name not in STRATEGIES:
        problems.append(Problem(where, "strategy.name", f"unknown strategy '{name}'",
                                f"use one of {', '.join(STRATEGIES)}: strategy=pbt"))
        return None
    if name == "search":
        return None
    size, interval = strategy.get("population"), strategy.get("interval")
    quantile, resample = strategy.get("quantile"), strategy.get("resample")
    factors = list(strategy.get("factors") or [])
    max_epochs = cfg.trainer.max_epochs
    before = len(problems)
    _check(problems, composed.locate("strategy.population"), "strategy.population",
           isinstance(size, int) and size >= 2, f"must be an integer of at least 2, got {size}",
           "e.g. strategy.population=8")
    _check(problems, composed.locate("strategy.quantile"), "strategy.quantile",
           _number(quantile) and 0 < quantile <= 0.5, f"must be in (0, 0.5], got {quantile}",
           "0.25: the bottom quarter copies from the top quarter")
    _check(problems, composed.locate("strategy.resample"), "strategy.resample",
           _number(resample) and 0 <= resample <= 1, f"must be in [0, 1], got {resample}",
           "e.g. strategy.resample=0.25")
    _check(problems, composed.locate("strategy.factors"), "strategy.factors",
           bool(factors) and all(_number(f) and f > 0 for f in factors),
           f"must be a list of numbers above 0, got {factors}", "e.g. strategy.factors=[0.8,1.2]")
    divides = (isinstance(interval, int) and 1 <= interval <= max_epochs
               and max_epochs % interval == 0)
    _check(problems, composed.locate("strategy.interval"), "strategy.interval", divides,
           f"{interval} epochs per segment do not divide trainer.max_epochs={max_epochs} "
           "into whole segments", f"pick a divisor of {max_epochs}, e.g. "
           f"strategy.interval={_divisor(max_epochs)}, or change trainer.max_epochs")
    _check(problems, composed.locate("n_trials"), "n_trials",
           not composed.locate("n_trials").startswith("command line"),
           "has no meaning under strategy=pbt: the budget is population x generations "
           "(trainer.max_epochs / strategy.interval segments per member)",
           "leave n_trials out; size the sweep with strategy.population and trainer.max_epochs")
    _check(problems, composed.locate("resume_checkpoint_s"), "resume_checkpoint_s",
           cfg.resume_checkpoint_s is not None,
           "is null, but PBT copies members through their checkpoints",
           "leave resume_checkpoint_s at a number (the default 60) for strategy=pbt")
    _check(problems, "torchrun", "strategy", machines == 1,
           f"a member spans {machines} machines, whose other nodes cannot read the "
           "checkpoints rank 0 writes", "run strategy=pbt with one node per trial "
           "(DDP on one machine's devices works: devices_per_trial)")
    metric = cfg.metric
    _check(problems, composed.locate("metric"), "metric",
           isinstance(metric, str) or len(metric) == 1,
           "PBT ranks members by one metric, got several",
           "name one metric for strategy=pbt, e.g. metric=val_acc")
    mutable = _mutable(strategy.get("mutable"), space, where, problems)
    if len(problems) > before or space is None:
        return None
    return Population(size, interval, max_epochs // interval, float(quantile), float(resample),
                      tuple(float(f) for f in factors), mutable)


def use_population(composed: Composed, population: Population) -> None:
    """Set what the population decides in the config: ``n_trials`` (population x
    generations) and no pruner (PBT replaces its bottom members instead)."""
    for cfg in (composed.cfg, composed.raw):
        OmegaConf.update(cfg, "n_trials", population.segments, merge=False)
        OmegaConf.update(cfg, "pruner", {"_target_": "optuna.pruners.NopPruner"}, merge=False)
    composed.choices["pruner"] = "none"


def _mutable(asked, space: SearchSpace | None, where: str, problems: list[Problem]
             ) -> tuple[str, ...]:
    if space is None:
        return ()
    by_path = {p.path: p for p in space.params}
    if asked is None:
        keys = [p.path for p in space.params if isinstance(p.distribution, FloatDistribution)]
        if not keys:
            problems.append(Problem(where, "strategy.mutable",
                                    f"the search space ({space.source}) has no float key for "
                                    "PBT to mutate", "name the keys: strategy.mutable=[model.lr]"))
        return tuple(keys)
    keys = [str(k) for k in asked]
    unknown = [k for k in keys if k not in by_path]
    if unknown or not keys:
        problems.append(Problem(where, "strategy.mutable",
                                f"{', '.join(unknown) or 'an empty list'}: not in the search "
                                f"space ({space.source})",
                                f"name keys of the search space: {', '.join(by_path)}"))
        return ()
    for param in space.params:
        bound = [path for path, _ in param.when if path in keys]
        if bound:
            problems.append(Problem(where, "strategy.mutable",
                                    f"{bound[0]} decides whether {param.path} is sampled "
                                    "(its `when`), so a member cannot change it",
                                    f"leave {bound[0]} out of strategy.mutable"))
    return tuple(keys)


def _check(problems: list[Problem], where: str, key: str, ok: bool, message: str,
           fix: str) -> None:
    if not ok:
        problems.append(Problem(where, key, message, fix))


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _divisor(n: int) -> int:
    """A divisor of ``n`` near a quarter of it (a segment length to suggest)."""
    return max((d for d in range(1, n + 1) if n % d == 0 and d <= max(1, n // 4)), default=1)
