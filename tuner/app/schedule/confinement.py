"""Which configs a scheduled job may run. Configs are code: a `_target_` imports and
runs what it names. A `tuner sweep` typed by hand runs what its user chose; a scheduled
job runs unattended, from a file anyone with write access to it may have edited. So a job
composes only tuner's built-in conf and config folders inside the project (the folder
holding the schedule file, or below it), and this is checked when the job is added and
again each time it is about to run.

Hydra has two more ways to reach a file elsewhere, both refused in a job's overrides:
``hydra.searchpath=[...]`` adds a config folder, and a group option written as a path
(``model=../../elsewhere/model/x``) loads the file it leads to. A `_target_` set by an
override would name code outside the project's config files, so it is refused too.
"""

from __future__ import annotations

import re
from pathlib import Path

from tuner.config.locate import config_roots, override_key
from tuner.core.errors import ConfigError, Problem

ALLOWED = ("tuner's built-in conf, or a config folder inside the project: {project} or a "
           "folder below it")
OPTION_NAME = re.compile(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*$|^null$")


def project_config_dir(config_dir: str | Path | None, project_dir: Path, where: str,
                       key: str, base: Path | None = None) -> Path | None:
    """``config_dir`` resolved (symlinks too, relative ones from ``base``, by default the
    project), or ConfigError when it lies outside the project."""
    if config_dir is None:
        return None
    project = project_dir.resolve()
    resolved = ((base or project) / Path(config_dir).expanduser()).resolve()
    if not resolved.is_relative_to(project):
        raise ConfigError(Problem(
            where, key, f"{config_dir} resolves to {resolved}, outside the project: a "
            "scheduled job runs configs (which are code) only from "
            + ALLOWED.format(project=project),
            f"move or copy the config folder under {project} (a symlink to a folder elsewhere "
            "is refused too), or run it by hand with `tuner sweep --config-dir`"))
    if not resolved.is_dir():
        raise ConfigError(Problem(where, key, f"{resolved} is not a directory",
                                  "pass the folder that holds your config groups"))
    return resolved


def check_overrides(overrides: tuple[str, ...] | list[str], config_dir: Path | None,
                    where: str, key: str) -> None:
    groups = _group_names(config_dir)
    problems = []
    for override in overrides:
        name = override_key(override)
        value = override.split("=", 1)[1] if "=" in override else ""
        if name.split(".")[0].split("/")[0] == "hydra":
            problems.append(Problem(where, key, f"'{override}': a scheduled job cannot "
                                    "change Hydra's settings (hydra.searchpath would add "
                                    "config folders outside the project)",
                                    "use the job's config_dir (--config-dir) instead"))
        elif name.split(".")[-1] == "_target_":
            problems.append(Problem(where, key, f"'{override}': a scheduled job cannot set "
                                    "a _target_ (the code a config runs) by override",
                                    "write it in a config file in the project's config "
                                    "folder and select that file"))
        elif ("/" in name or name in groups) and value and not OPTION_NAME.match(value):
            problems.append(Problem(where, key, f"'{override}': a config option must be a "
                                    "name, not a path (a path could load a file outside "
                                    "the config folders)",
                                    "name an option of the group, e.g. model=cnn"))
    if problems:
        raise ConfigError(problems)


def _group_names(config_dir: Path | None) -> set[str]:
    return {p.name for root in config_roots(config_dir) for p in root.iterdir() if p.is_dir()}
