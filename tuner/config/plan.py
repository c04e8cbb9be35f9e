"""A sweep plan: the composed config after every check that needs no side effect.

:func:`make_plan` runs the checks (:mod:`tuner.config.checks`): the objectives, the
budget, the study name, the slots against this machine, the search space against the
config, that every ``_target_`` imports, and that the sampler and pruner accept their
arguments. Anything wrong raises one ConfigError listing each problem with its file and
key. The preflight (:mod:`tuner.trial.preflight`) then trains one batch; only after both
does anything get written.

The plan is a value: it is pickled to every slot, and it records what it learnt about
the machine when it was made (the node count under torchrun), so that no layer above
has to read the environment again.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from tuner.config import checks, trainer_checks
from tuner.config.compose import Composed
from tuner.config.compression import Compression, compression_of
from tuner.config.launcher import SlurmLauncher, slurm_launcher
from tuner.config.machine import nodes
from tuner.config.population import Population, population_of, use_population
from tuner.config.space import SearchSpace
from tuner.config.space_parse import parse
from tuner.core.errors import ConfigError, Problem
from tuner.core.measures import float_metric


@dataclass(frozen=True)
class SweepPlan:
    composed: Composed
    metrics: tuple[str, ...]
    directions: tuple[str, ...]
    space: SearchSpace
    nodes: int = 1  # machines one trial spans (more than one only under torchrun)
    notes: tuple[str, ...] = ()  # what tuner does differently from the config, said once
    population: Population | None = None  # strategy=pbt; None: the sampler's search
    compression: Compression | None = None  # compress=...; None: models are not measured
    slurm: SlurmLauncher | None = None  # launcher=slurm; None: this machine's slots train

    @property
    def cfg(self) -> DictConfig:
        return self.composed.cfg

    @property
    def study_name(self) -> str:
        return self.cfg.study_name

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.run_dir)

    def trial_dir(self, number: int) -> Path:
        """Where trial ``number``'s files go: Lightning's, DDP ranks' reports, and the
        checkpoint its chain of repeats resumes from (tuner.trial.resume)."""
        return self.run_dir / "trials" / self.study_name / str(number)

    @property
    def multi_objective(self) -> bool:
        return len(self.metrics) > 1

    @property
    def ranks_per_trial(self) -> int:
        """Processes one trial trains on (DDP ranks): its devices on every node."""
        return int(self.cfg.devices_per_trial) * self.nodes

    @property
    def reports_epochs(self) -> bool:
        """Trials report each epoch's metric to Optuna (for pruning and learning curves);
        Optuna takes intermediate values for single-objective studies only, and a size or
        latency has no training curve."""
        return not self.multi_objective and self.epoch_metric is not None

    @property
    def epoch_metric(self) -> str | None:
        """What each epoch reports: the objective, or the float metric a compressed one
        is named after (the pruner reads the float training curve)."""
        return float_metric(self.metrics[0])

    def locate(self, key: str) -> str:
        return self.composed.locate(key)

    def trial_config(self, values: dict[str, Any]) -> DictConfig:
        """The config one trial trains with: sampled values set, then resolved, so that
        keys interpolating a searched key (``${data.block_size}``) follow it."""
        cfg = self.space.apply(pickle.loads(self._raw_pickled), values, copy=False)
        OmegaConf.resolve(cfg)
        return cfg

    @cached_property
    def _raw_pickled(self) -> bytes:
        # Each trial gets its own copy of the config: unpickling one costs a quarter of
        # DictConfig's deepcopy, which walks every node in Python (3.6 ms a trial here).
        return pickle.dumps(self.composed.raw)

    def study_params(self) -> dict[str, Any]:
        """What the parent MLflow run records about the study (set once, at creation)."""
        choices = self.composed.choices
        return {
            "metric": ",".join(self.metrics), "direction": ",".join(self.directions),
            **{f"{group}": choices.get(group) for group in
               ("model", "data", "search", "sampler", "pruner", "strategy", "storage",
                "compress")},
            "search_space_fingerprint": self.space.fingerprint(),
        }


def to_yaml(cfg: DictConfig) -> str:
    """A resolved config as YAML (what a trial's run and attribute hold): the same
    document as ``OmegaConf.to_yaml`` (enums by name), written by libyaml's emitter in a
    quarter of the time, which a trial pays every time."""
    return yaml.dump(OmegaConf.to_container(cfg, enum_to_str=True),
                     Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper),
                     sort_keys=False, allow_unicode=True, default_flow_style=False)


def make_plan(composed: Composed) -> SweepPlan:
    """The plan of ``composed``; raises one ConfigError naming every problem."""
    cfg = composed.cfg
    problems: list[Problem] = []
    trainer_checks.trainer(composed, problems)
    if problems:  # the checks below read trainer settings, and need their types right
        raise ConfigError(problems)
    metrics, directions = checks.objectives(composed, problems)
    checks.budget(composed, problems)
    checks.targets(composed, problems)
    checks.run_dir(composed, problems)
    checks.slots(composed, problems)
    checks.storage(composed, problems)
    notes = trainer_checks.callbacks(composed, problems)
    try:
        space = parse(cfg.search, composed.locate("search"), composed.locate)
        space.check_against(cfg, composed.locate)
    except ConfigError as error:
        problems.extend(error.problems)
        space = None
    compression = compression_of(composed, space, metrics, problems)
    slurm = slurm_launcher(composed, problems)
    population = population_of(composed, space, problems, nodes())
    if population is not None:
        use_population(composed, population)
    if space is not None:  # the sampler needs the space (grid), the checks need both
        problems.extend(checks.sampler_and_pruner(composed, space, len(metrics)))
    if problems:
        raise ConfigError(problems)
    if compression is not None and len(metrics) == 1 and float_metric(metrics[0]) is None:
        notes.append(f"{metrics[0]} has no training curve: trials are not pruned, and each "
                     "is measured once it completes")
    return SweepPlan(composed, metrics, directions, space, nodes(), tuple(notes), population,
                     compression, slurm)
