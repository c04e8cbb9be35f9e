"""Hydra's and OmegaConf's composition errors, as a problem with a file, a key and a fix.

A misspelt key is answered with the nearest keys the config declares (its schema's
fields), never with the name of one of tuner's classes; a key that was renamed is
refused with what it became.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Sequence
from pathlib import Path

import yaml
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf.errors import OmegaConfBaseException

from tuner.config.locate import (
    default_choices,
    display_path,
    group_file,
    group_options,
    locate,
    override_key,
)
from tuner.core.errors import ConfigError, Problem, first_line

_IN_CONFIG = re.compile(r"In '([^']+)'")


def _where_composition_failed(error: Exception, config_dir: Path | None) -> str:
    """The file named in Hydra's "In 'model/typo': ..." messages."""
    match = _IN_CONFIG.search(str(error))
    if match and "/" in match.group(1):
        group, option = match.group(1).rsplit("/", 1)
        path = group_file(group, option, config_dir)
        if path is not None:
            return display_path(path)
    return match.group(1) if match else "config"


def _failed_override(text: str, overrides: Sequence[str]) -> str | None:
    """The override Hydra names in 'Error merging override X' / "Could not override 'K'"."""
    match = re.search(r"Error merging override (.+)", text)
    if match:
        return match.group(1).strip()
    match = re.search(r"Could not override '([^']+)'", text)
    if match:
        return next((o for o in overrides if override_key(o) == match.group(1)),
                    match.group(1))
    return None


# Keys that were renamed: the old word is refused with what it became, never ignored.
RENAMED = {
    "workers": ("slots", "the processes that train trials on this machine are `slots` "
                         "(`tuner worker` is the command that joins a study from another "
                         "machine)"),
}


def unknown_key(where: str, key: str, schema: object = None) -> Problem:
    """A key the config has no place for: renamed (say what it became), or misspelt
    (say the nearest of the keys ``schema``, the dataclass of its parent, declares)."""
    if key in RENAMED:
        new, why = RENAMED[key]
        return Problem(where, key, f"was renamed {new}: {why}", f"use {new}=... instead")
    parent, _, name = key.rpartition(".")
    valid = ([f.name for f in dataclasses.fields(schema)] if dataclasses.is_dataclass(schema)
             else valid_keys(parent))
    near = [f"{parent}.{k}" if parent else k for k in nearest(name, valid)]
    guess = f"did you mean {' or '.join(near)}? " if near else ""
    return Problem(where, key, "no such key in the config",
                   f"{guess}`tuner sweep --cfg` prints every valid key")


def nearest(name: str, valid: Sequence[str]) -> list[str]:
    """Up to three of ``valid`` that ``name`` most likely meant: the closest spellings,
    then those it begins."""
    near = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
    return near + [k for k in valid if k.startswith(name) and k not in near][:3 - len(near)]


def valid_keys(parent: str) -> list[str]:
    """The keys the schema declares under ``parent`` ("" for the top level); none where
    a group's schema is its own (a model's arguments)."""
    from tuner.config.schema import SweepSchema

    schema: object = SweepSchema
    for part in filter(None, parent.split(".")):
        fields = {f.name: f for f in dataclasses.fields(schema)} if dataclasses.is_dataclass(
            schema) else {}
        if part not in fields:
            return []
        default = fields[part].default_factory  # nested schemas are default factories
        schema = default if default is not dataclasses.MISSING else None
    return [f.name for f in dataclasses.fields(schema)] if dataclasses.is_dataclass(schema) \
        else []


def _schema_named(name: str | None) -> object:
    from tuner.config import schema

    found = getattr(schema, name, None) if name else None
    return found if dataclasses.is_dataclass(found) else None


def _fix_for(message: str) -> str:
    if "not in" in message:
        return "remove or correct the key; `tuner sweep --cfg` prints every valid key"
    if "expected one of" in message:
        return "use one of the listed values"
    return "give a value of the expected type"


def translate(error: Exception, overrides: Sequence[str], config_dir: Path | None
               ) -> ConfigError:
    """Turn a Hydra/OmegaConf failure into a ConfigError naming file and key."""
    if isinstance(error, MissingConfigException):
        text = str(error)
        match = re.search(r"Could not find '([^']+)/([^']+)'", text)
        if match:
            group, option = match.groups()
            return ConfigError(Problem(
                "command line", group, f"there is no {group} option '{option}'",
                f"choose one of: {', '.join(group_options(group, config_dir))}"
                + ("" if config_dir else
                   " (or add your own with --config-dir DIR holding "
                   f"{group}/{option}.yaml)")))
        return ConfigError(Problem("config", "", first_line(text),
                                   "check the group names in the defaults list"))
    if isinstance(error, OverrideParseException):
        return ConfigError(Problem("command line", "", f"cannot parse an override: "
                                   f"{first_line(str(error))}",
                                   "write overrides as key=value, e.g. n_trials=40 or "
                                   "'metric=[val_acc,param_count]' (quote lists in the shell)"))
    if "Config group override must be" in str(error):
        return _group_given_a_value(overrides, config_dir, error)
    cause = error.__cause__ if isinstance(error, ConfigCompositionException) else error
    if isinstance(cause, OmegaConfBaseException):
        return _value_error(error, cause, overrides, config_dir)
    text = str(error)
    if isinstance(error, ConfigCompositionException):
        return _composition_error(text, config_dir, error)
    if isinstance(error, yaml.YAMLError):
        mark = getattr(error, "problem_mark", None)
        where = f"{mark.name}:{mark.line + 1}" if mark is not None else "config"
        return ConfigError(Problem(where, "", f"invalid YAML: {getattr(error, 'problem', '')}",
                                   "fix the YAML syntax at that line"))
    return ConfigError(Problem("config", "", f"{type(error).__name__}: {first_line(text)}"))


def _value_error(error: Exception, cause: OmegaConfBaseException, overrides: Sequence[str],
                 config_dir: Path | None) -> ConfigError:
    """A key or value OmegaConf refused while Hydra merged files and overrides."""
    key = getattr(cause, "full_key", "") or ""
    message = first_line(str(cause))
    merging = _failed_override(str(error), overrides)
    if merging:
        where = f"command line ({merging})"
    elif isinstance(error, ConfigCompositionException) and error.__cause__ is not None:
        where = (locate(key, default_choices(overrides), config_dir, overrides) if key
                 else "command line")
    else:
        where = _where_composition_failed(error, config_dir)
    fix = _fix_for(message)
    if "not in" in message and key and not key.startswith("search."):
        return ConfigError(unknown_key(where, key, getattr(cause, "object_type", None)))
    if merging and key.startswith("search.") and "not in struct" in message:
        fix = ("a search entry written as a dotted key (model.lr: {...}) cannot be "
               "reached by path; write it nested (model: {lr: {...}}), or override the "
               "whole entry with '+search={...}'")
    return ConfigError(Problem(where, key, message, fix))


# Top-level keys whose value is a mapping (a group's options are files, each a mapping).
MAPPINGS = ("model", "data", "trainer", "callbacks", "search", "sampler", "pruner", "storage",
            "tracking")


def _not_a_mapping(where: str) -> Problem | None:
    """The key of ``where`` (a preset, say) that gives a list or a value where the config
    has a mapping: OmegaConf says only "Cannot merge DictConfig with ListConfig"."""
    try:
        node = yaml.safe_load(Path(where).read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(node, dict):
        return None
    key = next((k for k in MAPPINGS if k in node and not isinstance(node[k], dict)), None)
    if key is None:
        return None
    return Problem(where, key, f"must be a mapping, got a {type(node[key]).__name__}",
                   f"write {key} as NAME: VALUE lines, e.g. callbacks: {{early_stopping: "
                   "{_target_: lightning.pytorch.callbacks.EarlyStopping, monitor: val_loss}}"
                   if key == "callbacks" else f"write {key} as NAME: VALUE lines")


def _group_given_a_value(overrides: Sequence[str], config_dir: Path | None,
                         error: Exception) -> ConfigError:
    """``callbacks=5`` or ``model={...}``: a group takes the name of one of its files."""
    from tuner.config.locate import GROUPS

    given = next((o for o in overrides if override_key(o).lstrip("+~") in GROUPS
                  and not re.fullmatch(r"[A-Za-z_][\w./-]*", o.partition("=")[2])), None)
    if given is None:
        return ConfigError(Problem("command line", "", first_line(str(error)),
                                   "give a group the name of one of its files"))
    group = override_key(given).lstrip("+~")
    return ConfigError(Problem(
        f"command line ({given})", group,
        f"chooses a file of the {group} group, not a value",
        f"choose one of: {', '.join(group_options(group, config_dir))}, or write your own "
        f"{group}/NAME.yaml in --config-dir"))


def _composition_error(text: str, config_dir: Path | None, error: Exception) -> ConfigError:
    """A failure Hydra reports in its own words: the file it was composing, the key."""
    where = _where_composition_failed(error, config_dir)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    detail = lines[1] if len(lines) > 1 else lines[0]
    key_match = re.search(r"full_key: (\S+)", text)
    key = key_match.group(1) if key_match else ""
    if "Could not override" in text:
        return ConfigError(unknown_key("command line", text.split("'")[1]))
    if "Cannot merge DictConfig with" in text:
        not_mapping = _not_a_mapping(where)
        if not_mapping is not None:
            return ConfigError(not_mapping)
    if "not in" in detail and key:
        kind = re.search(r"object_type=(\w+)", text)
        return ConfigError(unknown_key(where, key, _schema_named(kind and kind.group(1))))
    return ConfigError(Problem(where, key, detail, _fix_for(detail)))


