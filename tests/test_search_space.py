"""Search spaces: parsing, conditional sampling, fingerprints, grids, and every rejection."""

from __future__ import annotations

import math

import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import compose
from tuner.config.space_parse import parse
from tuner.core.errors import ConfigError

SOURCE = "conf/search/test.yaml"


def sample_many(space, n=40, seed=0):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(space.sample(trial))
        study.tell(trial, 0.0)
    return out


def test_nested_and_dotted_forms_name_the_same_paths():
    nested = parse({"model": {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}}},
                   SOURCE)
    dotted = parse({"model.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}},
                   SOURCE)
    assert [p.path for p in nested.params] == [p.path for p in dotted.params] == ["model.lr"]
    assert nested.fingerprint() == dotted.fingerprint()


def test_conditional_param_sampled_only_when_condition_holds():
    space = parse({
        "model": {
            "momentum": {"type": "float", "low": 0.0, "high": 0.9,
                         "when": {"model.optimizer": ["sgd", "rmsprop"]}},
            "optimizer": {"type": "categorical", "choices": ["sgd", "rmsprop", "adam"]},
        }}, SOURCE)
    # The dependency comes first, whatever the order in the file.
    assert [p.path for p in space.params] == ["model.optimizer", "model.momentum"]
    samples = sample_many(space, 60)
    for values in samples:
        assert ("model.momentum" in values) == (values["model.optimizer"] in ("sgd", "rmsprop"))
    assert {v["model.optimizer"] for v in samples} == {"sgd", "rmsprop", "adam"}


def test_samples_respect_bounds_step_and_log():
    space = parse({"a": {"type": "int", "low": 2, "high": 20, "step": 3},
                   "b": {"type": "float", "low": 1e-5, "high": 1.0, "log": True},
                   "c": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.25}}, SOURCE)
    for v in sample_many(space):
        assert v["a"] in range(2, 21, 3)
        assert 1e-5 <= v["b"] <= 1.0
        assert v["c"] in (0.0, 0.25, 0.5, 0.75, 1.0)


def test_apply_sets_sampled_values_on_a_copy(tmp_path):
    cfg = compose(run_dir=tmp_path).cfg
    space = parse(cfg.search, SOURCE)
    values = {"model.lr": 0.05, "model.optimizer": "sgd", "data.batch_size": 32}
    applied = space.apply(cfg, values)
    assert applied.model.lr == 0.05 and applied.model.optimizer == "sgd"
    assert applied.data.batch_size == 32
    assert cfg.model.lr == 0.001  # the composed config is untouched


def test_fingerprint_changes_with_any_bound_or_condition():
    base = {"model.lr": {"type": "float", "low": 0.001, "high": 0.1},
            "model.optimizer": {"type": "categorical", "choices": ["sgd", "adam"]}}
    fp = parse(base, SOURCE).fingerprint()
    assert fp == parse(dict(reversed(base.items())), SOURCE).fingerprint()  # order-free
    changed = {**base, "model.lr": {"type": "float", "low": 0.001, "high": 0.2}}
    assert parse(changed, SOURCE).fingerprint() != fp
    conditional = {**base, "model.lr": {**base["model.lr"], "when": {"model.optimizer": "sgd"}}}
    assert parse(conditional, SOURCE).fingerprint() != fp


def test_grid_lists_every_value():
    space = parse({"model.width": {"type": "int", "low": 32, "high": 96, "step": 32},
                   "model.dropout": {"type": "float", "low": 0.0, "high": 0.2, "step": 0.1},
                   "model.optimizer": {"type": "categorical", "choices": ["sgd", "adam"]}},
                  SOURCE)
    assert space.grid() == {"model.width": [32, 64, 96], "model.dropout": [0.0, 0.1, 0.2],
                            "model.optimizer": ["sgd", "adam"]}


def test_grid_refuses_continuous_params():
    space = parse({"model.lr": {"type": "float", "low": 0.001, "high": 0.1}}, SOURCE)
    with pytest.raises(ConfigError) as excinfo:
        space.grid()
    assert excinfo.value.problems[0].key == "search.model.lr"
    assert "step" in excinfo.value.problems[0].fix


BAD_SPACES = [
    ({"model.lr": {"type": "float", "low": 0.1, "high": 0.01}}, "search.model.lr",
     "greater than high"),
    ({"model.lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}, "search.model.lr",
     "log scale needs low > 0"),
    ({"model.lr": {"type": "float", "low": -1.0, "high": 0.1, "log": True}}, "search.model.lr",
     "log scale needs low > 0"),
    ({"model.width": {"type": "int", "low": 0, "high": 8, "log": True}}, "search.model.width",
     "log scale needs low > 0"),
    ({"model.optimizer": {"type": "categorical", "choices": []}}, "search.model.optimizer",
     "non-empty list"),
    ({"model.optimizer": {"type": "categorical"}}, "search.model.optimizer", "non-empty list"),
    ({"model.hidden": {"type": "categorical", "choices": [[64, 64], [128]]}},
     "search.model.hidden", "must be str, int, float, bool or null"),
    ({"model.hidden": {"type": "categorical", "choices": [{"a": 1}]}}, "search.model.hidden",
     "must be str, int, float, bool or null"),
    ({"model.x": {"type": "categorical", "choices": [1, 1]}}, "search.model.x", "repeat"),
    ({"model.lr": {"type": "float", "low": 0.0, "high": 1.0, "when": {"model.opt": "sgd"}}},
     "search.model.lr.when", "not an entry of this search space"),
    ({"model.opt": {"type": "categorical", "choices": ["sgd", "adam"]},
      "model.lr": {"type": "float", "low": 0.0, "high": 1.0, "when": {"model.opt": "sdg"}}},
     "search.model.lr.when", "can never be 'sdg'"),
    ({"model.lr": {"type": "float", "low": 0.0, "high": 1.0, "when": {"model.lr": 0.5}}},
     "search.model.lr.when", "cannot depend on itself"),
    ({"model.lr": {"type": "normal", "low": 0.0, "high": 1.0}}, "search.model.lr",
     "unknown type"),
    ({"model.lr": {"type": "float", "low": 0.0, "hgih": 1.0}}, "search.model.lr",
     "unknown field"),
    ({"model.lr": {"type": "float", "low": "small", "high": 1.0}}, "search.model.lr",
     "`low` must be a finite number"),
    ({"model.lr": {"type": "float", "low": 0.0, "high": math.inf}}, "search.model.lr",
     "`high` must be a finite number"),
    ({"model.depth": {"type": "int", "low": 1.5, "high": 3}}, "search.model.depth",
     "finite integer"),
    ({"model.depth": {"type": "int", "low": 1, "high": 9, "step": 0}}, "search.model.depth",
     "positive integer"),
    ({"model.x": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.3}}, "search.model.x",
     "not a multiple of step"),
    ({"model.x": {"type": "float", "low": 0.1, "high": 1.0, "step": 0.1, "log": True}},
     "search.model.x", "cannot be combined"),
    ({"model.lr": 0.01}, "search.model.lr", "expected a distribution"),
    ({"model": {"lr": {}}}, "search.model.lr", "expected a distribution"),
    ({"model.lr": {"type": "float", "low": 0.0, "high": 1.0, "log": "yes"}}, "search.model.lr",
     "`log` must be true or false"),
    ({}, "search", "empty"),
]


@pytest.mark.parametrize(("node", "key", "says"), BAD_SPACES)
def test_each_bad_space_is_rejected_with_file_and_key(node, key, says):
    with pytest.raises(ConfigError) as excinfo:
        parse(node, SOURCE)
    problems = excinfo.value.problems
    assert any(p.key == key and says in p.message for p in problems), problems
    assert all(p.where == SOURCE and p.fix for p in problems)


def test_all_problems_reported_at_once():
    with pytest.raises(ConfigError) as excinfo:
        parse({"model.a": {"type": "float", "low": 2.0, "high": 1.0},
               "model.b": {"type": "categorical", "choices": []}}, SOURCE)
    assert {p.key for p in excinfo.value.problems} == {"search.model.a", "search.model.b"}


def test_condition_cycle_is_rejected():
    with pytest.raises(ConfigError) as excinfo:
        parse({"model.a": {"type": "categorical", "choices": [1, 2], "when": {"model.b": 1}},
               "model.b": {"type": "categorical", "choices": [1, 2], "when": {"model.a": 1}}},
              SOURCE)
    assert "cycle" in excinfo.value.problems[0].message


@pytest.mark.parametrize(("node", "says"), [
    ({"model.lrr": {"type": "float", "low": 0.001, "high": 0.1}}, "not a key of the composed"),
    ({"model.width": {"type": "float", "low": 0.5, "high": 1.0}}, "cannot be set at model.width"),
    ({"model.optimizer": {"type": "categorical", "choices": ["sgd", "sdg"]}},
     "cannot be set at model.optimizer"),
    ({"n_trials": {"type": "int", "low": 1, "high": 9}}, "cannot be searched"),
    ({"tracking.flush_interval": {"type": "float", "low": 1, "high": 9}}, "cannot be searched"),
])
def test_space_is_checked_against_the_config(node, says, tmp_path):
    composed = compose(run_dir=tmp_path)
    with pytest.raises(ConfigError) as excinfo:
        parse(node, SOURCE).check_against(composed.cfg, composed.locate)
    problem = excinfo.value.problems[0]
    assert says in problem.message and problem.where == SOURCE
    assert problem.key == "search." + next(iter(node))


def test_unknown_path_lists_the_keys_that_exist(tmp_path):
    composed = compose(run_dir=tmp_path)
    with pytest.raises(ConfigError) as excinfo:
        parse({"model.lrr": {"type": "float", "low": 0.001, "high": 0.1}},
              SOURCE).check_against(composed.cfg, composed.locate)
    assert "lr" in excinfo.value.problems[0].fix and "mlp.yaml" in excinfo.value.problems[0].fix


def test_every_builtin_search_space_fits_its_model(tmp_path):
    for overrides in (["search=mlp"], ["model=cnn", "search=cnn"], ["experiment=diabetes"],
                      ["experiment=shakespeare"], ["experiment=tradeoff"]):
        composed = compose(*overrides, run_dir=tmp_path)
        space = parse(composed.cfg.search, SOURCE)
        space.check_against(composed.cfg, composed.locate)
        assert len(space) >= 3


# -- properties ----------------------------------------------------------------------

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def float_entries(draw):
    low = draw(finite)
    high = draw(st.floats(min_value=low, max_value=low + 1e6, allow_nan=False))
    entry = {"type": "float", "low": low, "high": high}
    if low > 0 and draw(st.booleans()):
        entry["log"] = True
    return entry


@st.composite
def int_entries(draw):
    low = draw(st.integers(-1000, 1000))
    step = draw(st.integers(1, 5))
    high = low + step * draw(st.integers(0, 50))
    return {"type": "int", "low": low, "high": high, "step": step}


primitive = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=5))
categorical_entries = st.lists(primitive, min_size=1, max_size=6, unique_by=repr).map(
    lambda c: {"type": "categorical", "choices": c})
entries = st.one_of(float_entries(), int_entries(), categorical_entries)
names = st.text("abcdefghij_", min_size=1, max_size=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(names, entries, min_size=1, max_size=6))
def test_property_valid_spaces_parse_and_sample_within_bounds(raw):
    node = {f"model.{k}": v for k, v in raw.items()}
    space = parse(node, SOURCE)
    assert {p.path for p in space.params} == set(node)
    for values in sample_many(space, n=5):
        for path, value in values.items():
            assert space.params[[p.path for p in space.params].index(path)].contains(value)


@settings(max_examples=60, deadline=None)
@given(low=finite, gap=st.floats(min_value=1e-3, max_value=1e3), kind=st.sampled_from(
    ["float", "int"]))
def test_property_reversed_bounds_always_rejected(low, gap, kind):
    low = round(low) if kind == "int" else low
    high = low - (max(1, round(gap)) if kind == "int" else gap)
    with pytest.raises(ConfigError) as excinfo:
        parse({"model.x": {"type": kind, "low": low, "high": high}}, SOURCE)
    assert excinfo.value.problems[0].key == "search.model.x"


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(names, entries, min_size=1, max_size=5))
def test_property_fingerprint_is_order_independent(raw):
    node = {f"model.{k}": v for k, v in raw.items()}
    reordered = dict(reversed(list(node.items())))
    assert parse(node, SOURCE).fingerprint() == parse(reordered, SOURCE).fingerprint()
