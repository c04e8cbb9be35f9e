"""Bad input is refused before any study, trial or MLflow run exists.

Each case goes through the real path (compose -> plan -> preflight -> sweep) in-process
and must leave the run directory uncreated, so no storage, MLflow store or artifact
exists. The corpus of malformed inputs through the `tuner` command itself is
tests/test_bad_input_corpus.py; the cases here are the ones it does not hold.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import FIXTURE_CONF, sweep
from tuner.core.errors import ConfigError

BAD_INPUTS = [
    # (overrides, key the error names, text in the message)
    (["metric=[val_acc,val_acc]", "direction=[maximize,maximize]"], "metric", "twice"),
    (["n_trials=0"], "n_trials", "at least 1"),
    (["timeout=-5"], "timeout", "positive"),
    (["max_failures=-2"], "max_failures", "must be >= 0"),
    (["resume_checkpoint_s=-1"], "resume_checkpoint_s", "must be >= 0 seconds or null"),
    (["trainer.max_epochs=0"], "trainer.max_epochs", "at least 1"),
    (["trainer.check_val_every_n_epoch=5"], "trainer.check_val_every_n_epoch", "never"),
    (["study_name='my study/1'"], "study_name", "not a usable name"),
    (["data._target_=tuner.data.digits.Nope"], "data._target_", "cannot import"),
    (["+sampler.bogus_arg=1"], "sampler", "TypeError"),
    (["pruner.n_startup_trials=-1"], "pruner", "cannot be negative"),
    (["metric=train_loss", "direction=minimize"], "metric", "by the end of validation"),
    (["model.width=0"], "model", "cannot be built"),
    (["model.input_dim=10"], "", "training one batch failed"),
    (["run_dir=/proc/tuner-cannot-write-here"], "run_dir", "cannot write"),
    # compress (tuner.config.compression; the model's layers: the preflight)
    (["compress.method=int4"], "compress.method", "unknown compression method"),
    (["compress=prune", "compress.amount=1.5"], "compress.amount", "must be in (0, 1)"),
    (["compress=prune", "compress.amount=0"], "compress.amount", "must be in (0, 1)"),
    (["compress=qat", "trainer.max_epochs=3", "compress.qat_start_epoch=3"],
     "compress.qat_start_epoch", "would never start"),
    (["metric=compressed/val_acc"], "metric", "and compress.method is none"),
    (["compress=int8", "metric=[val_acc,model/speed]", "direction=[maximize,minimize]"],
     "metric", "not a measure tuner takes"),
    (["compress=int8", "compress.latency_runs=0"], "compress.latency_runs", "at least 1"),
    (["+search.compress.method={type:categorical,choices:[int8,int3]}"],
     "search.compress.method", "'int3' is not a compression method"),
    (["compress=prune", "+search.compress.amount={type:float,low:0.5,high:1.0}"],
     "search.compress.amount", "inside (0, 1)"),
    (["compress=qat", "trainer.max_epochs=3",
      "+search.compress.qat_start_epoch={type:int,low:1,high:3}"],
     "search.compress.qat_start_epoch", "would never start in some"),
    (["compress=int8", "+search.compress.latency_threads={type:int,low:1,high:2}"],
     "search.compress.latency_threads", "every trial of a study must share"),
    (["model=conv_only", "search=lr_only", "compress=int8"],
     "compress.method", "has no layer that compress=int8 compresses"),
    # launcher (tuner.config.launcher; what needs the cluster: tests/test_slurm.py)
    (["launcher=slurm"], "storage", "which the cluster's nodes do not see"),
    (["launcher=slurm", "storage=postgres"], "tracking", "which the cluster's nodes do not see"),
    (["launcher=slurm", "storage=postgres", "tracking=server", "launcher.time=3",
      "resume_checkpoint_s=60"], "launcher.time", "before its first checkpoint"),
    (["launcher=slurm", "storage=postgres", "tracking=server", "launcher.time=2"],
     "launcher.signal_s", "not less than the job's time limit"),
    (["launcher=slurm", "storage=postgres", "tracking=server", "launcher.nodes=3",
      "launcher.nodes_per_trial=2"], "launcher.nodes", "not a whole number of jobs"),
    (["launcher.kind=pbs"], "launcher.kind", "unknown launcher"),
]


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
