"""Sweep behaviour through the Python API, on real journal files and MLflow SQLite stores."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import FIXTURE_CONF, MODELS, client_for, sweep, trial_runs
from tuner.core import attrs
from tuner.core.errors import SweepStopped
from tuner.study.trial_attrs import trial_attr
from tuner.study.trials import best_trial
from tuner.tracking import tags
from tuner.tracking.links import model_uri_of
from tuner.tracking.registry import current_champion, promote


def states(study: optuna.Study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.trials:
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def test_rerun_tops_up_exactly_to_n_trials(tmp_path):
    run_dir = tmp_path / "runs"
    first = sweep("n_trials=3", run_dir=run_dir)
    assert first.stop_reason == "budget"
    assert len(first.study.trials) == 3
    second = sweep("n_trials=5", run_dir=run_dir)
    finished = [t for t in second.study.trials if t.state in (TrialState.COMPLETE,
                                                                TrialState.PRUNED)]
    assert len(finished) == 5
    assert [t.number for t in second.study.trials] == [0, 1, 2, 3, 4]
    third = sweep("n_trials=5", run_dir=run_dir)  # budget already spent: nothing new
    assert len(third.study.trials) == 5 and third.trained == 0
    # One parent run for all three invocations, one child run per trial.
    runs = trial_runs(run_dir, "digits-mlp")
    assert sorted(int(r.data.tags[tags.TRIAL_NUMBER]) for r in runs) == [0, 1, 2, 3, 4]
    assert len({r.data.tags[tags.PARENT_RUN] for r in runs}) == 1


def test_resumed_sampler_does_not_repeat_points(tmp_path):
    run_dir = tmp_path / "runs"
    sweep("n_trials=2", "sampler=random", run_dir=run_dir)
    outcome = sweep("n_trials=4", "sampler=random", run_dir=run_dir)
    params = [tuple(sorted(t.params.items())) for t in outcome.study.trials]
    assert len(set(params)) == 4


def test_pruned_trials_are_pruned_in_optuna_and_finished_in_mlflow(tmp_path):
    run_dir = tmp_path / "runs"
    # Accuracy can never exceed 1.01, so every trial is pruned at its first report.
    outcome = sweep("n_trials=3", "pruner=threshold", "pruner.lower=1.01", "pruner.upper=null",
                    run_dir=run_dir)
    assert states(outcome.study) == {"PRUNED": 3}
    for trial in outcome.study.trials:
        assert list(trial.intermediate_values) == [1]  # epochs, reported once per epoch
    for run in trial_runs(run_dir, "digits-mlp"):
        assert run.info.status == "FINISHED"
        assert run.data.tags[tags.PRUNED] == "true"
        assert run.data.tags[tags.STATE] == "PRUNED"
        assert run.data.tags[tags.PRUNED_AT_EPOCH] == "1"
    assert outcome.summary.best is None and outcome.summary.champion is None


def test_median_pruner_stops_some_trials_early(tmp_path):
    outcome = sweep("n_trials=10", "trainer.max_epochs=4", "pruner.n_startup_trials=2",
                    "pruner.n_warmup_steps=0", "sampler=random", run_dir=tmp_path / "runs")
    pruned = [t for t in outcome.study.trials if t.state == TrialState.PRUNED]
    assert pruned, "median pruning pruned nothing in 10 random trials"
    assert all(max(t.intermediate_values) < 4 for t in pruned)  # stopped before the end
    finished = [t for t in outcome.study.trials if t.state in (TrialState.COMPLETE,
                                                                TrialState.PRUNED)]
    assert len(finished) == 10


def test_failed_trials_are_recorded_and_replaced(tmp_path):
    run_dir = tmp_path / "runs"
    outcome = sweep("n_trials=4", "model=flaky_mlp", "search=width_only", "sampler=random",
                    "max_failures=0", run_dir=run_dir, config_dir=FIXTURE_CONF)
    failed = [t for t in outcome.study.trials if t.state == TrialState.FAIL]
    assert failed, "no sampled width exceeded the limit"
    finished = [t for t in outcome.study.trials if t.state != TrialState.FAIL]
    assert len(finished) == 4  # failures do not count toward the budget
    for trial in failed:
        assert trial.params["model.width"] == 512
        assert trial.user_attrs[attrs.FAIL_REASON_ATTR].startswith("OutOfMemoryError: CUDA out")
    runs = {r.data.tags[tags.TRIAL_NUMBER]: r for r in trial_runs(run_dir, "digits-flaky_mlp")}
    client = client_for(run_dir)
    for trial in failed:
        run = runs[str(trial.number)]
        assert run.info.status == "FAILED"
        assert run.data.tags[tags.STATE] == "FAIL"
        assert "OutOfMemoryError" in run.data.tags[tags.FAIL_REASON]
        error = client.download_artifacts(run.info.run_id, "error.txt")
        assert "Traceback" in Path(error).read_text()


def test_a_failed_trial_is_repeated_with_the_same_params_and_seed(tmp_path):
    run_dir = tmp_path / "runs"
    outcome = sweep("n_trials=4", "model=flaky_mlp", "search=width_only", "sampler=random",
                    "max_failures=0", "retry_failed=2", run_dir=run_dir,
                    config_dir=FIXTURE_CONF)
    trials = outcome.study.trials
    firsts = [t for t in trials if t.state == TrialState.FAIL
              and attrs.RETRY_OF_ATTR not in t.user_attrs]
    assert firsts, "no sampled width exceeded the limit"
    runs = {r.data.tags[tags.TRIAL_NUMBER]: r for r in trial_runs(run_dir, "digits-flaky_mlp")}
    for first in firsts:
        chain = [t for t in trials if t.user_attrs.get(attrs.RETRY_OF_ATTR) == first.number]
        # Width 512 always fails: the first attempt and exactly two repeats, then no more.
        assert [t.user_attrs[attrs.ATTEMPT_ATTR] for t in chain] == [2, 3]
        for repeat in chain:
            assert repeat.state == TrialState.FAIL
            assert repeat.params == first.params
            assert repeat.user_attrs[attrs.SEED_ATTR] == first.user_attrs[attrs.SEED_ATTR]
            assert runs[str(repeat.number)].data.tags[tags.RETRY_OF] == str(first.number)
    assert sum(t.state != TrialState.FAIL for t in trials) == 4


def test_without_retry_failed_a_failed_trial_is_not_repeated(tmp_path):
    outcome = sweep("n_trials=4", "model=flaky_mlp", "search=width_only", "sampler=random",
                    "max_failures=0", run_dir=tmp_path / "runs", config_dir=FIXTURE_CONF)
    assert not [t for t in outcome.study.trials if attrs.RETRY_OF_ATTR in t.user_attrs]


def test_max_failures_stops_the_sweep_naming_the_reason(tmp_path):
    run_dir = tmp_path / "runs"
    with pytest.raises(SweepStopped) as excinfo:
        sweep("n_trials=5", "model=flaky_mlp", "search=width_only",
              "search.model.width.choices=[512]", "max_failures=3", run_dir=run_dir,
              config_dir=FIXTURE_CONF)
    message = str(excinfo.value)
    assert "stopped after 3 failed trials (max_failures=3)" in message
    assert "(3x): OutOfMemoryError: CUDA out of memory (simulated)" in message
    client = client_for(run_dir)
    parent = [r for r in client.search_runs([client.get_experiment_by_name(
        "digits-flaky_mlp").experiment_id]) if r.data.tags.get(tags.ROLE) == "study"]
    assert [r.info.status for r in parent] == ["FAILED"]


def test_diverged_trial_is_pruned_at_once_even_without_a_pruner(tmp_path):
    # SGD at lr=1e6 diverges: the validation loss is NaN after the first epoch.
    outcome = sweep("n_trials=2", "metric=val_loss", "direction=minimize", "pruner=none",
                    "trainer.max_epochs=5", "model.lr=1.0e6", "model.optimizer=sgd",
                    "~search.model.lr", "~search.model.optimizer", "~search.model.momentum",
                    run_dir=tmp_path / "runs")
    assert states(outcome.study) == {"PRUNED": 2}
    for trial in outcome.study.trials:
        assert list(trial.intermediate_values) == [1]
        assert math.isnan(trial.intermediate_values[1])
    for run in trial_runs(tmp_path / "runs", "digits-mlp"):
        assert run.info.status == "FINISHED" and run.data.tags[tags.PRUNED_AT_EPOCH] == "1"


def test_nan_final_value_fails_a_multi_objective_trial(tmp_path):
    # Multi-objective studies have no epoch reports, so divergence shows at the end.
    with pytest.raises(SweepStopped) as excinfo:
        sweep("experiment=tradeoff", "n_trials=5", "metric=[val_loss,param_count]",
              "direction=[minimize,minimize]", "model.lr=1.0e6", "model.optimizer=sgd",
              "~search.model.lr", "~search.model.optimizer", "~search.model.momentum",
              "max_failures=2", run_dir=tmp_path / "runs")
    message = str(excinfo.value)
    assert "stopped after 2 failed trials" in message
    # The loss turns NaN in the first epochs: the trial stops on it, before the objective.
    assert "FloatingPointError: the training loss became NaN or infinite in epoch" in message
    runs = trial_runs(tmp_path / "runs", "digits-mlp-tradeoff")
    assert sorted(r.info.status for r in runs) == ["FAILED", "FAILED"]


def test_interpolated_keys_follow_searched_values(tmp_path):
    from tests.conftest import plan

    sweep_plan = plan("experiment=shakespeare",
                      "+search.data.block_size={type:categorical,choices:[16,32]}",
                      run_dir=tmp_path / "runs")
    cfg = sweep_plan.trial_config({"data.block_size": 16, "model.n_embd": 32})
    assert cfg.data.block_size == cfg.model.block_size == 16
    assert cfg.model.n_embd == 32
    outcome = sweep("experiment=shakespeare", "n_trials=2", "trainer.max_epochs=1",
                    "data.batch_size=64", "+search.data.block_size={type:categorical,"
                    "choices:[16,32]}", run_dir=tmp_path / "runs")
    assert states(outcome.study) in ({"COMPLETE": 2}, {"COMPLETE": 1, "PRUNED": 1})


SAMPLERS = ["tpe", "random", "cmaes", "gp", "qmc", "nsga2"]


@pytest.fixture(scope="module")
def shared_run_dir(tmp_path_factory):
    """One MLflow store for many studies: creating it costs seconds of migrations."""
    return tmp_path_factory.mktemp("samplers") / "runs"


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_each_sampler_runs_trials(sampler, shared_run_dir):
    outcome = sweep("n_trials=3", f"sampler={sampler}", "pruner=none",
                    f"study_name=sampler-{sampler}", run_dir=shared_run_dir)
    assert states(outcome.study) == {"COMPLETE": 3}
    assert isinstance(outcome.study.sampler, optuna.samplers.BaseSampler)
    for trial in outcome.study.trials:
        assert 1e-4 <= trial.params["model.lr"] <= 1e-1
        assert trial.params["data.batch_size"] in (32, 64, 128)


def test_grid_sampler_ends_when_the_grid_is_exhausted(shared_run_dir):
    outcome = sweep("n_trials=10", "sampler=grid", "search=grid_small", "study_name=grid",
                    run_dir=shared_run_dir, config_dir=FIXTURE_CONF)
    assert outcome.stop_reason == "grid exhausted"
    assert sorted(t.params["model.width"] for t in outcome.study.trials) == [32, 64]


def test_a_rerun_of_a_grid_study_trains_the_points_left(shared_run_dir):
    sweep("n_trials=1", "sampler=grid", "search=grid_small", "study_name=grid-rerun",
          run_dir=shared_run_dir, config_dir=FIXTURE_CONF)
    outcome = sweep("n_trials=10", "sampler=grid", "search=grid_small",
                    "study_name=grid-rerun", run_dir=shared_run_dir, config_dir=FIXTURE_CONF)
    assert outcome.stop_reason == "grid exhausted"
    assert sorted(t.params["model.width"] for t in outcome.study.trials) == [32, 64]


def test_two_slots_never_train_one_grid_point_twice(shared_run_dir):
    """Once every point is taken, a free slot waits for the others' points to finish
    (Optuna's GridSampler would hand it a point another slot is training)."""
    outcome = sweep("n_trials=10", "sampler=grid", "search=grid_small", "slots=2",
                    "study_name=grid-two-slots", run_dir=shared_run_dir,
                    config_dir=FIXTURE_CONF)
    assert outcome.stop_reason == "grid exhausted"
    assert sorted(t.params["model.width"] for t in outcome.study.trials) == [32, 64]


def test_timeout_stops_starting_trials(shared_run_dir):
    outcome = sweep("n_trials=50", "timeout=0.001", "study_name=timeout",
                    run_dir=shared_run_dir)
    assert outcome.stop_reason == "timeout"
    assert len(outcome.study.trials) <= 1


def test_multi_objective_study_finds_a_pareto_front(shared_run_dir):
    outcome = sweep("experiment=tradeoff", "n_trials=6", MODELS, run_dir=shared_run_dir)
    study = outcome.study
    assert len(study.directions) == 2 and study.metric_names == ["val_acc", "param_count"]
    assert states(study) == {"COMPLETE": 6}
    front = study.best_trials
    assert front
    for trial in study.trials:  # nothing on the front is dominated
        for point in front:
            assert not (trial.values[0] > point.values[0] and trial.values[1] < point.values[1])
    # The champion is the best trial by the first metric.
    best = max(study.trials, key=lambda t: t.values[0])
    assert outcome.summary.champion.trial_number == best.number
    for trial in study.trials:
        assert trial.values[1] == pytest.approx(_mlp_params(trial))
        # Optuna holds no epoch reports here; the trial says how many epochs it trained.
        assert trial.user_attrs[attrs.EPOCHS_ATTR] == 2  # FAST: trainer.max_epochs=2


def _mlp_params(trial) -> float:
    width = trial.params["model.width"]
    depth = trial.params.get("model.depth", 2)
    return 64 * width + width + (depth - 1) * (width * width + width) + width * 10 + 10


def test_champion_alias_moves_only_when_beaten(shared_run_dir):
    outcome = sweep("n_trials=2", "study_name=champion", MODELS, run_dir=shared_run_dir)
    client = client_for(shared_run_dir)
    champion = current_champion(client, "champion")
    best = outcome.summary.best
    assert champion.version == "1" and champion.trial_number == best.number
    uri = model_uri_of(best, outcome.study.user_attrs)
    run_id = best.user_attrs[attrs.RUN_ID_ATTR]
    worse = promote(client, "champion", uri, run_id, best.values[0] - 0.1, "maximize", 99)
    assert worse.version == "1" and not worse.promoted
    better = promote(client, "champion", uri, run_id, best.values[0] + 0.01, "maximize", 98)
    assert not better.promoted  # the same run is the champion already, whatever its value
    other_run = client.create_run(client.get_experiment_by_name("champion").experiment_id)
    better = promote(client, "champion", uri, other_run.info.run_id, best.values[0] + 0.01,
                     "maximize", best.number)  # a recreated study: same number, new run
    assert better.version == "2" and better.promoted
    assert current_champion(client, "champion").run_id == other_run.info.run_id
    # Re-running the finished sweep keeps the better champion.
    sweep("n_trials=2", "study_name=champion", MODELS, run_dir=shared_run_dir)
    assert current_champion(client, "champion").version == "2"


def test_trial_seed_and_config_are_recorded(shared_run_dir):
    outcome = sweep("n_trials=2", "seed=7", "study_name=seeded", run_dir=shared_run_dir)
    for trial in outcome.study.trials:
        assert trial.user_attrs[attrs.SEED_ATTR] == 7 + trial.number
        config = trial_attr(trial, attrs.CONFIG_ATTR)
        assert f"lr: {trial.params['model.lr']}" in config
    assert not math.isnan(outcome.summary.best.values[0])


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_a_tie_for_best_goes_to_the_trial_whose_model_was_logged(direction):
    """Among equal values the champion must be chosen from a trial that has a model."""
    study = optuna.create_study(direction=direction)
    worse = 0.5 if direction == "maximize" else 0.99
    for value, user_attrs in [(worse, {attrs.MODEL_URI_ATTR: "models:/m-1"}), (0.9, {}),
                              (0.9, {attrs.MODEL_URI_ATTR: "models:/m-3"}), (0.9, {})]:
        study.add_trial(optuna.trial.create_trial(value=value, user_attrs=user_attrs))
    assert best_trial(study).number == 2
    study.add_trial(optuna.trial.create_trial(value=0.95 if direction == "maximize" else 0.85))
    assert best_trial(study).number == 4  # a strictly better value wins, model or not
    # Models are exported at the end, from a new best's kept weights: a tied trial that
    # kept none loses to one that did.
    for system_attrs in [{}, {attrs.MODEL_WEIGHTS_ATTR: "/runs/trials/s/6/model.pt"}]:
        study.add_trial(optuna.trial.create_trial(
            value=0.95 if direction == "maximize" else 0.85, system_attrs=system_attrs))
    assert best_trial(study).number == 6
