"""Compose the sweep configuration with Hydra and turn its failures into ConfigErrors.

The built-in groups live in ``conf/`` (installed as ``tuner.conf``). ``--config-dir``
adds a user's own groups through Hydra's search path, exactly as Hydra's own
``--config-dir`` does: the built-in directory comes first, so a user file with the same
group and name as a built-in one would be silently ignored. We refuse that instead.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from tuner.config.compose_errors import translate, unknown_key
from tuner.config.locate import (
    BUILTIN_CONF_DIR,
    GROUPS,
    PRIMARY,
    display_path,
    group_file,
    group_options,
    locate,
    same_content,
    yaml_has_key,
)
from tuner.config.schema import register_schemas
from tuner.core.errors import ConfigError, Problem, first_line


@dataclass
class Composed:
    """A composed configuration, resolved and not, and where each part came from.

    ``raw`` keeps its interpolations (``${data.num_features}``): a trial sets its sampled
    values there and resolves afterwards, so that keys which interpolate a searched key
    follow it. ``cfg`` is ``raw`` resolved, for everything that does not depend on a trial.
    """

    cfg: DictConfig
    raw: DictConfig
    choices: dict[str, str | None]  # group -> chosen option, e.g. {"model": "mlp"}
    config_dir: Path | None = None  # the user's --config-dir, if any
    overrides: list[str] = field(default_factory=list)

    def locate(self, key: str) -> str:
        """The file (or command-line override) a config key most likely came from."""
        return locate(key, self.choices, self.config_dir, self.overrides)


def _check_config_dir(config_dir: Path) -> None:
    if not config_dir.is_dir():
        raise ConfigError(Problem("command line", "--config-dir",
                                  f"{config_dir} is not a directory",
                                  "pass the folder that holds your config groups"))
    problems = []
    if (config_dir / f"{PRIMARY}.yaml").is_file():
        problems.append(Problem(
            display_path(config_dir / f"{PRIMARY}.yaml"), "",
            "a sweep.yaml in --config-dir would be ignored: tuner's own sweep.yaml is the "
            "primary config",
            "put project-wide settings in an experiment preset, e.g. "
            "experiment/my_project.yaml starting with '# @package _global_', and run with "
            "experiment=my_project"))
    for group in GROUPS:
        for path in sorted((config_dir / group).glob("*.yaml")):
            builtin = BUILTIN_CONF_DIR / group / path.name
            # The same content is no conflict (lightning-hydra-template's empty
            # callbacks/none.yaml, say): whichever file Hydra takes, the config is the same.
            if builtin.is_file() and not same_content(path, builtin):
                problems.append(Problem(
                    display_path(path), "",
                    f"has the same name as the built-in {group}={path.stem}, which would "
                    "take precedence",
                    f"rename it (e.g. {group}/my_{path.stem}.yaml) and select it with "
                    f"{group}=my_{path.stem}"))
    if problems:
        raise ConfigError(problems)


def compose_config(overrides: Sequence[str] = (), config_dir: str | Path | None = None
                   ) -> Composed:
    """Compose ``conf/sweep.yaml`` with ``overrides``; resolve it; check every key.

    Raises ConfigError for any unknown group, option or key, wrong type, missing
    required value or broken interpolation. Writes nothing.
    """
    register_schemas()
    overrides = list(overrides)
    user_dir = Path(config_dir).expanduser().resolve() if config_dir else None
    if user_dir is not None:
        _check_config_dir(user_dir)
    hydra_overrides = [_any_trainer_argument(o) for o in overrides]
    if user_dir is not None:
        hydra_overrides.append(f"hydra.searchpath=[file://{user_dir}]")
    try:
        with initialize_config_dir(config_dir=str(BUILTIN_CONF_DIR), version_base="1.3"):
            cfg = compose(PRIMARY, overrides=hydra_overrides, return_hydra_config=True)
    except Exception as error:  # Hydra raises many types; all are input errors here
        raise translate(error, overrides, user_dir) from error
    choices = {k: v for k, v in cfg.hydra.runtime.choices.items() if not k.startswith("hydra")}
    with open_dict(cfg):
        del cfg["hydra"]
    composed = Composed(cfg=cfg, raw=cfg, choices=choices, config_dir=user_dir,
                        overrides=overrides)
    _check_unknown_keys(composed)
    try:
        _check_missing(composed)
        _resolve(composed)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", "") or ""
        message = first_line(str(error))
        raise ConfigError(Problem(composed.locate(key) if key else "config", key, message,
                                  _interpolation_fix(message, key, user_dir))) from error
    return composed


def _any_trainer_argument(override: str) -> str:
    """``trainer.KEY=VALUE`` sets any Trainer argument, whether the trainer file names it
    or not (Hydra would want ``+trainer.KEY`` for a new key): the keys are checked
    against Lightning's own list afterwards (tuner.config.trainer_checks)."""
    return f"++{override}" if override.startswith("trainer.") else override


def _check_unknown_keys(composed: Composed) -> None:
    """Keys a typed node does not declare. Hydra refuses them in files and plain
    overrides, but ``+trainer.max_epoch=3`` would add one that nothing reads."""
    problems = []

    def walk(node: DictConfig, prefix: str) -> None:
        schema = OmegaConf.get_type(node)
        fields = ({f.name for f in dataclasses.fields(schema)}
                  if dataclasses.is_dataclass(schema) else None)
        for key in node:
            full = f"{prefix}{key}"
            if fields is not None and key not in fields:
                problems.append(unknown_key(composed.locate(full), full, schema))
            if OmegaConf.is_missing(node, key) or OmegaConf.is_interpolation(node, key):
                continue
            child = node[key]
            if isinstance(child, DictConfig):
                walk(child, f"{full}.")

    walk(composed.cfg, "")
    if problems:
        raise ConfigError(problems)


def _check_missing(composed: Composed) -> None:
    missing = sorted(OmegaConf.missing_keys(composed.cfg))
    if missing:
        raise ConfigError([Problem(composed.locate(k), k, "is required but has no value",
                                   f"set it on the command line, e.g. {k}=...")
                           for k in missing])


def _resolve(composed: Composed) -> None:
    raw = composed.raw
    # Paths interpolate ${run_dir}; make it absolute first so that every process and
    # every later `tuner best` or `tuner ui` agrees on where the stores are.
    raw.run_dir = os.path.abspath(os.path.expanduser(raw.run_dir))
    if raw.study_name is None:
        raw.study_name = f"{composed.choices.get('data')}-{composed.choices.get('model')}"
    composed.cfg = copy.deepcopy(raw)
    OmegaConf.resolve(composed.cfg)


def _interpolation_fix(message: str, key: str, config_dir: Path | None) -> str:
    match = re.search(r"Interpolation key '(data\.[^']+)' not found", message)
    if match:
        wanted = match.group(1)
        providers = [o for o in group_options("data", config_dir)
                     if yaml_has_key(group_file("data", o, config_dir), wanted.split(".", 1)[1])]
        if providers:
            options = ", ".join(f"data={o}" for o in providers)
            return f"choose data that provides {wanted} ({options}), or set {key} directly"
    return "point the interpolation at a key that exists, or set the value directly"
