"""Composition: every conf group composes; bad input fails at compose time, naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import compose
from tuner.config.locate import BUILTIN_CONF_DIR, GROUPS, group_options
from tuner.core.errors import ConfigError

# Options that need a value only the user can give.
# Options that need a value only the user can give, or data that fits them.
CONTEXT = {("data", "mnist"): ["data.path=/nonexistent/mnist"],
           ("experiment", "mnist"): ["data.path=/nonexistent/mnist"],
           ("model", "gpt"): ["data=shakespeare"],
           ("model", "linear"): ["data=diabetes"],
           ("data", "diabetes"): ["model=linear"],
           ("data", "shakespeare"): ["model=gpt"]}


def all_options():
    return [(g, o) for g in GROUPS for o in group_options(g)]


def test_every_group_has_options():
    for group in GROUPS:
        assert group_options(group), f"conf/{group}/ has no options"


@pytest.mark.parametrize(("group", "option"), all_options())
def test_every_option_composes_and_resolves(group, option, tmp_path):
    composed = compose(f"{group}={option}", *CONTEXT.get((group, option), []), run_dir=tmp_path)
    cfg = composed.cfg
    assert composed.choices[group] == option
    assert not OmegaConf.missing_keys(cfg)
    assert cfg.run_dir == str(tmp_path)  # absolute, so stores are found from anywhere
    assert "${" not in OmegaConf.to_yaml(cfg)  # fully resolved
    for key in ("model", "data", "sampler", "pruner", "storage"):
        assert "_target_" in cfg[key], f"{group}={option}: {key} has no _target_"


def test_default_study_name_is_data_then_model(tmp_path):
    assert compose(run_dir=tmp_path).cfg.study_name == "digits-mlp"
    assert compose("model=cnn", run_dir=tmp_path).cfg.study_name == "digits-cnn"
    assert compose("experiment=diabetes", run_dir=tmp_path).cfg.study_name == "diabetes-linear"


def test_interpolations_follow_the_data(tmp_path):
    cfg = compose("data=diabetes", "model=linear", run_dir=tmp_path).cfg
    assert cfg.model.input_dim == 10
    cfg = compose("model=cnn", "data=mnist", "data.path=/x", run_dir=tmp_path).cfg
    assert list(cfg.model.image_shape) == [1, 28, 28]


def test_experiment_preset_overrides_groups_and_metric(tmp_path):
    cfg = compose("experiment=tradeoff", run_dir=tmp_path).cfg
    assert list(cfg.metric) == ["val_acc", "param_count"]
    assert list(cfg.direction) == ["maximize", "minimize"]
    assert cfg.sampler._target_ == "optuna.samplers.NSGAIISampler"
    assert "depth" in cfg.search.model  # the preset extends the MLP search space


def one_problem(excinfo):
    assert len(excinfo.value.problems) >= 1
    return excinfo.value.problems[0]


@pytest.mark.parametrize(("override", "where", "key", "says", "fix"), [
    ("model.widht=3", "command line", "model.widht", "no such key", "did you mean model.width"),
    ("n_trials=1.5", "command line", "n_trials", "Integer", ""),
    ("+tracking.flush_intervall=1", "command line", "tracking.flush_intervall",
     "no such key", "did you mean tracking.flush_interval"),
    ("+model.widht=3", "command line", "model.widht", "no such key",
     "did you mean model.width"),
    ("workers=2", "command line", "workers", "was renamed slots", "use slots="),
])
def test_bad_override_names_key(override, where, key, says, fix, tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        compose(override, run_dir=tmp_path)
    problem = one_problem(excinfo)
    assert problem.where.startswith(where)
    assert problem.key == key
    assert says in problem.message
    assert fix in problem.fix and problem.fix
    assert "Schema" not in problem.message + problem.fix  # tuner's classes are not the user's


def test_unknown_option_lists_the_real_ones(tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        compose("model=resnet", run_dir=tmp_path)
    problem = one_problem(excinfo)
    assert problem.key == "model" and "resnet" in problem.message
    assert "cnn, gpt, linear, mlp" in problem.fix
    assert "schema" not in problem.fix  # schemas are not user options


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_user_config_dir_adds_groups(tmp_path):
    conf = tmp_path / "conf"
    write(conf / "model" / "wide_mlp.yaml", "defaults:\n  - mlp\n  - _self_\nwidth: 512\n")
    write(conf / "search" / "tiny.yaml", "model.lr: {type: float, low: 0.001, high: 0.1}\n")
    cfg = compose("model=wide_mlp", "search=tiny", run_dir=tmp_path, config_dir=conf).cfg
    assert cfg.model.width == 512 and cfg.model.depth == 2
    assert set(cfg.search) == {"model.lr"}


def test_user_file_shadowing_a_builtin_is_refused(tmp_path):
    write(tmp_path / "conf" / "model" / "mlp.yaml", "width: 3\n")
    with pytest.raises(ConfigError) as excinfo:
        compose(run_dir=tmp_path, config_dir=tmp_path / "conf")
    problem = one_problem(excinfo)
    assert "mlp.yaml" in problem.where and "built-in" in problem.message
    assert "my_mlp" in problem.fix


def test_builtin_conf_ships_with_the_package():
    assert (BUILTIN_CONF_DIR / "sweep.yaml").is_file()
    for group in GROUPS:
        assert (BUILTIN_CONF_DIR / group).is_dir()
