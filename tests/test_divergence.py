"""A trial whose training diverges stops, whatever its objective says, and its model is
never kept, exported or registered (tuner.trial.divergence)."""

from __future__ import annotations

import math

import pytest
from optuna.trial import TrialState

from tests.conftest import FIXTURE_CONF, MODELS, client_for, sweep, trial_runs
from tuner.core import attrs
from tuner.core.errors import SweepStopped
from tuner.study.trial_attrs import trial_attr
from tuner.tracking import tags


def test_a_nan_loss_prunes_a_trial_whose_accuracy_stays_finite(tmp_path):
    run_dir = tmp_path / "runs"
    outcome = sweep("model=diverging_mlp", "n_trials=3", "trainer.max_epochs=4",
                    "pruner=none", MODELS, run_dir=run_dir, config_dir=FIXTURE_CONF)
    trials = outcome.study.trials
    assert [t.state for t in trials] == [TrialState.PRUNED] * 3
    for trial in trials:
        # Epoch 2 trained on a NaN loss; its accuracy was a number all the same.
        assert trial.user_attrs[attrs.PRUNED_REASON_ATTR] == (
            "the training loss became NaN or infinite in epoch 2")
        assert all(math.isfinite(v) for v in trial.intermediate_values.values())
        assert trial_attr(trial, attrs.MODEL_WEIGHTS_ATTR) is None
    for run in trial_runs(run_dir, "digits-diverging_mlp"):
        assert run.data.tags[tags.PRUNED_AT_EPOCH] == "2"
        assert "training loss became NaN" in run.data.tags[tags.PRUNED_BECAUSE]
    assert outcome.summary.champion is None  # nothing to register
    assert not client_for(run_dir).search_registered_models()
    assert not list(run_dir.glob("trials/**/model.pt"))


def test_a_nan_loss_fails_a_multi_objective_trial(tmp_path):
    with pytest.raises(SweepStopped) as excinfo:
        sweep("model=diverging_mlp", "experiment=tradeoff", "n_trials=3",
              "trainer.max_epochs=3", "max_failures=2", run_dir=tmp_path / "runs",
              config_dir=FIXTURE_CONF)
    assert ("(2x): FloatingPointError: the training loss became NaN or infinite in epoch 2"
            in str(excinfo.value))
