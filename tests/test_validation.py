"""Bad input is refused before any study, trial or MLflow run exists.

Each case goes through the real path (compose -> plan -> preflight -> sweep) and must
leave the run directory uncreated, so no storage, MLflow store or artifact exists.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import sweep
from tuner.errors import ConfigError

FIXTURE_CONF = Path(__file__).parent / "fixtures" / "conf"

BAD_INPUTS = [
    # (overrides, key the error names, text in the message)
    (["metric=val_accuracy"], "metric", "is not logged by"),
    (["metric=[val_acc,val_acc]", "direction=[maximize,maximize]"], "metric", "twice"),
    (["direction=up"], "direction", "not maximize or minimize"),
    (["metric=[val_acc,param_count]", "direction=maximize"], "direction", "1 direction(s)"),
    (["metric=[val_acc,param_count]", "direction=[maximize,minimize]"], "pruner",
     "cannot prune a multi-objective"),
    (["metric=[val_acc,param_count]", "direction=[maximize,minimize]", "pruner=none",
      "sampler=cmaes"], "sampler", "CMA-ES"),
    (["sampler=grid"], "search.model.lr", "grid sampler needs a finite set"),
    (["n_trials=0"], "n_trials", "at least 1"),
    (["timeout=-5"], "timeout", "positive"),
    (["retry_failed=-1"], "retry_failed", "must be >= 0"),
    (["max_failures=-2"], "max_failures", "must be >= 0"),
    (["trainer.max_epochs=0"], "trainer.max_epochs", "at least 1"),
    (["trainer.check_val_every_n_epoch=5"], "trainer.check_val_every_n_epoch", "never"),
    (["study_name='my study/1'"], "study_name", "not a usable name"),
    (["model._target_=nowhere.Model"], "model._target_", "cannot import 'nowhere.Model'"),
    (["data._target_=tuner.data.digits.Nope"], "data._target_", "cannot import"),
    (["sampler._target_=optuna.samplers.NoSuchSampler"], "sampler._target_", "cannot import"),
    (["+sampler.bogus_arg=1"], "sampler", "TypeError"),
    (["pruner.n_startup_trials=-1"], "pruner", "cannot be negative"),
    (["metric=train_loss", "direction=minimize"], "metric", "by the end of validation"),
    (["sampler=grid", "search=grid_with_when"], "search.model.momentum.when",
     "repeats the same configuration"),
    (["model.width=0"], "model", "cannot be built"),
    (["model.input_dim=10"], "", "training one batch failed"),
    (["search.model.lr.low=0.5"], "search.model.lr", "greater than high"),
    (["search.model.lr.low=0"], "search.model.lr", "log scale needs low > 0"),
    (["search.data.batch_size.choices=[]"], "search.data.batch_size", "non-empty"),
    (["search.data.batch_size.choices=[[32,64],[128]]"], "search.data.batch_size",
     "must be str, int, float, bool or null"),
    (["search.model.width.step=5"], "search.model.width", "not a multiple of step"),
    (["+search.model.lrr={type:float,low:0.1,high:0.2}"], "search.model.lrr", "not a key"),
    (["~search.model.momentum",
      "+search.model.momentum={type:float,low:0.0,high:0.9,when:{model.optimizr:sgd}}"],
     "search.model.momentum.when", "not an entry"),
    (["run_dir=/proc/tuner-cannot-write-here"], "run_dir", "cannot write"),
]


def test_run_dir_under_a_file_is_refused(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError) as excinfo:
        sweep("n_trials=1", run_dir=blocker / "runs")
    assert excinfo.value.problems[0].key == "run_dir"
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize(("overrides", "key", "says"), BAD_INPUTS,
                         ids=[" ".join(case[0]) for case in BAD_INPUTS])
def test_bad_input_refused_with_nothing_written(overrides, key, says, tmp_path):
    run_dir = tmp_path / "runs"
    if overrides[0].startswith("run_dir="):
        run_dir = Path(overrides[0].split("=", 1)[1])
    with pytest.raises(ConfigError) as excinfo:
        sweep("n_trials=2", *overrides, run_dir=run_dir, config_dir=FIXTURE_CONF)
    problems = excinfo.value.problems
    assert any(p.key == key and says in p.message for p in problems), problems
    assert all(p.where and p.fix for p in problems), problems
    assert not run_dir.exists(), "something was written before the input was checked"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_trainer_on_cpu_machine_refused_before_anything(tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        sweep("trainer=gpu", run_dir=tmp_path / "runs")
    problem = excinfo.value.problems[0]
    assert problem.key == "trainer" and problem.where.startswith("conf/trainer/gpu.yaml")
    assert not (tmp_path / "runs").exists()


def test_search_space_changed_on_resume_is_refused(tmp_path):
    run_dir = tmp_path / "runs"
    sweep("n_trials=2", run_dir=run_dir)
    journal = (run_dir / "optuna.journal").read_bytes()
    with pytest.raises(ConfigError) as excinfo:
        sweep("n_trials=4", "search.model.lr.high=0.5", run_dir=run_dir)
    problem = excinfo.value.problems[0]
    assert "search space changed" in problem.message
    assert "study_name=digits-mlp-2" in problem.fix
    assert (run_dir / "optuna.journal").read_bytes() == journal  # no trial was added
    # A new study name is the way out, and it works.
    outcome = sweep("n_trials=1", "search.model.lr.high=0.5", "study_name=digits-mlp-2",
                    run_dir=run_dir)
    assert len(outcome.study.trials) == 1


def test_direction_changed_on_resume_is_refused(tmp_path):
    run_dir = tmp_path / "runs"
    sweep("n_trials=1", run_dir=run_dir)
    with pytest.raises(ConfigError, match="created to maximize"):
        sweep("n_trials=2", "direction=minimize", run_dir=run_dir)


def test_metric_changed_on_resume_is_refused(tmp_path):
    run_dir = tmp_path / "runs"
    sweep("n_trials=1", run_dir=run_dir)
    with pytest.raises(ConfigError, match="optimises val_acc") as excinfo:
        sweep("n_trials=2", "metric=param_count", run_dir=run_dir)
    assert excinfo.value.problems[0].key == "metric"


@pytest.mark.parametrize(("overrides", "key", "where"), [
    # the entry's file, and the override that changed one of its fields
    (["search.model.lr.low=0.5"], "search.model.lr",
     "conf/search/mlp.yaml (with command line search.model.lr.low=0.5)"),
    # an entry the experiment preset adds is located in the preset
    (["experiment=tradeoff", "search.model.depth.low=5"], "search.model.depth",
     "conf/experiment/tradeoff.yaml (with command line search.model.depth.low=5)"),
    # an entry added on the command line
    (["+search.model.nesterov={type:float,low:0,high:1}"], "search.model.nesterov",
     "command line (+search.model.nesterov={type:float,low:0,high:1})"),
])
def test_search_problems_name_where_the_entry_came_from(overrides, key, where, tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        sweep("n_trials=1", *overrides, run_dir=tmp_path / "runs")
    problem = next(p for p in excinfo.value.problems if p.key == key)
    assert problem.where == where, problem


def test_inherited_key_is_located_in_the_file_that_sets_it(tmp_path):
    from tests.conftest import compose

    composed = compose(run_dir=tmp_path)
    assert composed.locate("model.momentum").endswith("shared/optimizer.yaml")
    assert composed.locate("model.width").endswith("model/mlp.yaml")
    assert compose("trainer=gpu", run_dir=tmp_path).locate(
        "trainer.max_epochs").endswith("trainer/default.yaml")
    with_child = compose("+sampler.n_ei_candidates=3", run_dir=tmp_path)
    assert with_child.locate("sampler") == ("conf/sampler/tpe.yaml (with command line "
                                            "+sampler.n_ei_candidates=3)")
