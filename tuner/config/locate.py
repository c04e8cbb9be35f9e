"""Where a config key came from, for error messages: an override, a preset, or a file.

Hydra merges many files into one config and forgets where each value came from. For an
error message a good guess is enough. In order:

1. a command-line override that sets the key or one of its parents;
2. the chosen experiment preset, if it sets the key;
3. the chosen option's file in the key's group, or the first file along that file's
   ``defaults`` chain that sets the key (``model/mlp.yaml`` includes
   ``shared/optimizer.yaml``, ``trainer/gpu.yaml`` includes ``trainer/default.yaml``);
4. ``sweep.yaml``.

Overrides that set a key *below* the one in question are mentioned alongside the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

import tuner.conf
from tuner.config.schema import SCHEMA_NAMES

BUILTIN_CONF_DIR = Path(tuner.conf.__file__).resolve().parent
PRIMARY = "sweep"
GROUPS = ("model", "data", "trainer", "callbacks", "search", "sampler", "pruner", "storage",
          "tracking", "compress", "launcher", "experiment")


def display_path(path: Path) -> str:
    """A path relative to the working directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def config_roots(config_dir: Path | None) -> list[Path]:
    """The config folders, searched in this order: the built-in one, then the user's."""
    return [BUILTIN_CONF_DIR] + ([config_dir] if config_dir is not None else [])


def config_file(name: str, config_dir: Path | None) -> Path | None:
    """``conf/<name>.yaml`` in the built-in or the user's config dir (built-in first)."""
    for root in config_roots(config_dir):
        if (root / f"{name}.yaml").is_file():
            return root / f"{name}.yaml"
    return None


def group_file(group: str, option: str, config_dir: Path | None) -> Path | None:
    return config_file(f"{group}/{option}", config_dir)


def group_options(group: str, config_dir: Path | None = None) -> list[str]:
    """The options a user can pick for a group, built-in and their own."""
    names: set[str] = set()
    for root in config_roots(config_dir):
        if (root / group).is_dir():
            names.update(p.stem for p in (root / group).glob("*.yaml"))
    return sorted(names - SCHEMA_NAMES)


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~").split("@", 1)[0]


def default_choices(overrides: Sequence[str] = ()) -> dict[str, str | None]:
    """Group choices from sweep.yaml's defaults list, updated by GROUP=OPTION overrides."""
    choices: dict[str, str | None] = {}
    for entry in _load(BUILTIN_CONF_DIR / f"{PRIMARY}.yaml").get("defaults", []):
        if isinstance(entry, dict):
            for group, option in entry.items():
                choices[group] = option
    for override in overrides:
        key = override_key(override)
        if key in GROUPS and "=" in override:
            choices[key] = override.split("=", 1)[1]
    return choices


def same_content(path: Path, other: Path) -> bool:
    """Whether two YAML files hold the same config (comments and layout aside)."""
    return _load(path) == _load(other)


def _load(path: Path) -> dict:
    try:
        node = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return node if isinstance(node, dict) else {}


def yaml_has_key(path: Path | None, dotted: str) -> bool:
    if path is None:
        return False
    node: object = _load(path)
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _defaults_chain(path: Path, group: str, config_dir: Path | None,
                    seen: set[Path] | None = None) -> list[Path]:
    """``path`` and the files its ``defaults`` list includes, depth first."""
    seen = seen if seen is not None else set()
    if path in seen:
        return []
    seen.add(path)
    chain = [path]
    for entry in _load(path).get("defaults", []):
        if not isinstance(entry, str) or entry == "_self_" or entry in SCHEMA_NAMES:
            continue
        name = entry.split("@", 1)[0]
        target = (config_file(name.lstrip("/"), config_dir) if name.startswith("/")
                  else group_file(group, name, config_dir))
        if target is not None:
            chain += _defaults_chain(target, group, config_dir, seen)
    return chain


def _file_for(key: str, choices: dict[str, str | None], config_dir: Path | None) -> Path:
    experiment = choices.get("experiment")
    if experiment:
        path = group_file("experiment", experiment, config_dir)
        if yaml_has_key(path, key):
            return path
    group, _, subkey = key.partition(".")
    option = choices.get(group)
    if group in GROUPS and option:
        path = group_file(group, option, config_dir)
        if path is not None:
            if subkey:
                for candidate in _defaults_chain(path, group, config_dir):
                    if yaml_has_key(candidate, subkey):
                        return candidate
            return path
    return BUILTIN_CONF_DIR / f"{PRIMARY}.yaml"


def locate(key: str, choices: dict[str, str | None], config_dir: Path | None,
           overrides: Sequence[str]) -> str:
    below = []
    for override in overrides:
        okey = override_key(override)
        if okey in GROUPS:
            continue  # `model=cnn` picks a file; the file, found below, holds the value
        if key == okey or key.startswith(okey + "."):  # the override set it or a parent
            return f"command line ({override})"
        if okey.startswith(key + "."):
            below.append(override)
    where = display_path(_file_for(key, choices, config_dir))
    return f"{where} (with command line {', '.join(below)})" if below else where
