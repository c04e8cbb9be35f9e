"""`tuner init`: a config folder for a user's LightningModule and LightningDataModule.

From the two classes' constructors it writes the model and data files (``_target_``
filled in, every argument with its default), a search space proposing ranges for the
numeric and boolean arguments (tuner.config.proposals), and an experiment preset that
puts them together with the metric to optimise. The metric is found the way the
preflight finds it: the module and data are built with their defaults and one batch
is trained; the module's first validation metric with "acc" in its name is maximised,
else its first validation loss minimised.

Everything is checked before anything is written: both classes import and are the right
kind, no file would be overwritten (unless ``force``), and the option names do not
shadow tuner's built-in ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tuner.config.locate import BUILTIN_CONF_DIR
from tuner.config.proposals import Argument, arguments_of, proposal
from tuner.core.errors import ConfigError, Problem, describe_error


@dataclass(frozen=True)
class Scaffold:
    files: list[Path]
    experiment: str  # the preset to run: experiment=NAME
    metric: str | None  # None: the probe could not tell (the preset says ???)
    direction: str
    why_no_metric: str | None = None


def init_project(module_path: str, data_path: str, out_dir: Path, force: bool = False
                 ) -> Scaffold:
    import lightning.pytorch as pl

    module_cls = _load(module_path, "MODULE_CLASS", pl.LightningModule)
    data_cls = _load(data_path, "DATA_CLASS", pl.LightningDataModule)
    model_name, data_name = _option(module_cls, "model"), _option(data_cls, "data")
    model_args, data_args = arguments_of(module_cls), arguments_of(data_cls)
    files = {out_dir / "model" / f"{model_name}.yaml": _group_file(module_path, model_args),
             out_dir / "data" / f"{data_name}.yaml": _group_file(data_path, data_args),
             out_dir / "search" / f"{model_name}.yaml": _search_file(model_args, data_args)}
    preset = out_dir / "experiment" / f"{model_name}.yaml"
    existing = [p for p in [*files, preset] if p.exists()]
    if existing and not force:
        raise ConfigError([Problem(str(p), "", "exists already", "pass --force to overwrite "
                                   "it, or --dir another folder") for p in existing])
    metric, direction, why = _probe(module_cls, data_cls, model_args, data_args)
    files[preset] = _preset(model_name, data_name, metric, direction, why)
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return Scaffold(list(files), model_name, metric, direction, why)


def _load(path: str, argument: str, base: type) -> type:
    from hydra.utils import get_object

    try:
        found = get_object(path)
    except Exception as error:
        raise ConfigError(Problem("command line", argument,
                                  f"cannot import '{path}': {describe_error(error)}",
                                  "give the class's dotted path (package.module.Class); is "
                                  "its folder installed, or on PYTHONPATH?")) from error
    if not (isinstance(found, type) and issubclass(found, base)):
        raise ConfigError(Problem("command line", argument,
                                  f"'{path}' is not a lightning.pytorch.{base.__name__}",
                                  f"give a {base.__name__} subclass"))
    return found


def _option(cls: type, group: str) -> str:
    """The class's name in snake case; prefixed ``my_`` where tuner has that option."""
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()
    return f"my_{name}" if (BUILTIN_CONF_DIR / group / f"{name}.yaml").exists() else name


def _yaml_value(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False)
    return text.strip().removesuffix("\n...")


def _group_file(target: str, arguments: list[Argument]) -> str:
    lines = [f"# Written by `tuner init` from {target}'s constructor: every argument",
             "# with its default. ??? marks one without a default tuner can write: fill it",
             "# in (an object is a mapping with its own _target_).",
             f"_target_: {target}"]
    for arg in arguments:
        value = "???" if arg.missing else _yaml_value(arg.default)
        note = f"  # {arg.annotation}" if arg.annotation else ""
        lines.append(f"{arg.name}: {value}{note}")
    return "\n".join(lines) + "\n"


def _search_file(model_args: list[Argument], data_args: list[Argument]) -> str:
    lines = ["# Proposed by `tuner init` from the constructors' defaults: a starting point.",
             "# Narrow, widen or delete entries; each maps a config path to a distribution",
             "# (README: \"The search space\"). Shapes, class counts and seeds are left out."]
    for group, arguments in (("model", model_args), ("data", data_args)):
        entries = [(a, proposal(a)) for a in arguments]
        entries = [(a, p) for a, p in entries if p is not None]
        if not entries:
            continue
        lines.append(f"{group}:")
        for arg, entry in entries:
            default = _yaml_value(arg.default)
            lines.append(f"  {arg.name}: {_yaml_value(entry)}  # default {default}")
    return "\n".join(lines) + "\n"


def _preset(model: str, data: str, metric: str | None, direction: str, why: str | None) -> str:
    lines = ["# @package _global_",
             f"# The sweep `tuner init` set up: run it with experiment={model}.",
             "defaults:", f"  - override /model: {model}", f"  - override /data: {data}",
             f"  - override /search: {model}", ""]
    if metric is None:
        lines.append(f"metric: ???  # {why}: name a metric the module logs in validation")
    else:
        lines.append(f"metric: {_yaml_value(metric)}  # logged by the module in validation")
    lines.append(f"direction: {direction}")
    return "\n".join(lines) + "\n"


def _probe(module_cls: type, data_cls: type, model_args: list[Argument],
           data_args: list[Argument]) -> tuple[str | None, str, str | None]:
    """Train one batch with the defaults and pick the metric, as the preflight does."""
    missing = [a.name for a in [*model_args, *data_args] if a.missing]
    if missing:
        return None, "maximize", f"{', '.join(missing)} need values before one batch can run"
    from tuner.core.quiet import quiet_lightning
    from tuner.trial.build import build_trainer
    from tuner.trial.metrics_logger import BatchLogger
    from tuner.trial.preflight import MetricsAtValidationEnd

    quiet_lightning()
    seen = MetricsAtValidationEnd()
    try:
        # A logger that fast_dev_run swaps for Lightning's stand-in, as in the preflight.
        trainer = build_trainer(_probe_trainer(), fast_dev_run=1, callbacks=[seen],
                                logger=BatchLogger(lambda rows: None))
        trainer.fit(module_cls(), datamodule=data_cls())
    except Exception as error:
        return None, "maximize", f"one batch with the defaults failed ({describe_error(error)})"
    names = sorted(seen.names)
    validation = [n for n in names if "val" in n.lower()] or names
    accuracy = [n for n in validation if "acc" in n.lower()]
    if accuracy:
        return accuracy[0], "maximize", None
    loss = [n for n in validation if "loss" in n.lower()]
    if loss:
        return loss[0], "minimize", None
    return None, "maximize", "the module logged no validation metric in one batch"


def _probe_trainer():
    from omegaconf import OmegaConf

    return OmegaConf.create({"accelerator": "cpu", "devices": 1, "max_epochs": 1,
                             "enable_checkpointing": False})
