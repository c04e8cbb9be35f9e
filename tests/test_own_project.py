"""A user's own Lightning + Hydra project runs under tuner unchanged (examples/).

The project is written in lightning-hydra-template's layout and idioms, knowing nothing of
tuner: a module with ``_partial_`` optimizer and scheduler and a nested ``net``,
``val/acc``-style metric names, a confusion matrix logged as a figure through
``self.logger.experiment``, params through ``self.logger.log_hyperparams``, and a
``callbacks`` group (early stopping, a learning-rate monitor, a progress bar) composed
with a defaults list. The sweep runs through the installed command, as its README says.
"""

from __future__ import annotations

import os

import pytest

from tests.conftest import FAST, REPO, client_for, load_study, run_tuner, tuner_here
from tuner.tracking import tags

PROJECT = REPO / "examples" / "lightning_hydra"
MAX_EPOCHS = 15


@pytest.fixture(scope="module")
def project_sweep(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("own-project")
    result = run_tuner(
        "sweep", "--config-dir", str(PROJECT / "configs"), "experiment=digits_net",
        "n_trials=2", f"trainer.max_epochs={MAX_EPOCHS}", "pruner=none", "slots=1",
        "tracking.report=false", "tracking.log_models=false", "trainer.benchmark=false",
        cwd=cwd, env={"PYTHONPATH": os.pathsep.join(
            p for p in (str(PROJECT), os.environ.get("PYTHONPATH")) if p)})
    assert result.returncode == 0, result.stdout + result.stderr
    study = load_study(cwd / "runs", "sk_digits-digits_net")
    client = client_for(cwd / "runs")
    experiment = client.get_experiment_by_name("sk_digits-digits_net")
    runs = {int(r.data.tags[tags.TRIAL_NUMBER]): r for r in client.search_runs(
        [experiment.experiment_id], f"tags.{tags.ROLE} = 'trial'")}
    return result, study, client, runs


def test_every_trial_completes_with_the_projects_metric(project_sweep):
    _, study, _, runs = project_sweep
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert all(0.5 < t.value <= 1.0 for t in study.trials)  # val/acc, maximised
    assert sorted(runs) == [0, 1]


def test_early_stopping_ends_trials_before_max_epochs(project_sweep):
    _, _, client, runs = project_sweep
    for run in runs.values():
        epochs = client.get_metric_history(run.info.run_id, "val/acc")
        assert 3 <= len(epochs) < MAX_EPOCHS, f"trained {len(epochs)} epochs"


def test_the_learning_rate_monitor_and_the_figure_land_on_each_trials_run(project_sweep):
    _, study, client, runs = project_sweep
    for number, run in runs.items():
        history = client.get_metric_history(run.info.run_id, "lr-Adam")
        sampled = study.trials[number].params["model.optimizer.lr"]
        assert history and history[0].value == pytest.approx(sampled)
        artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
        assert "confusion_matrix.png" in artifacts
        assert "config.yaml" in artifacts


def test_log_hyperparams_records_params_beside_tunerss_own(project_sweep):
    _, study, _, runs = project_sweep
    for number, run in runs.items():
        params = run.data.params
        hidden = study.trials[number].params["model.net.hidden"]
        # The module logs its size; Lightning's hparams (save_hyperparameters(logger=False))
        # are not logged, as with Lightning's own logger.
        assert int(params["net/parameters"]) > hidden * 10
        assert params["model.net.hidden"] == str(hidden)  # tuner's sampled value
        assert "optimizer" not in params


def test_the_progress_bar_is_left_out_with_one_line_saying_so(project_sweep):
    result = project_sweep[0]
    said = [line for line in result.stdout.splitlines()
            if line.startswith("callbacks.rich_progress_bar: left out")]
    assert len(said) == 1, result.stdout


def test_the_docs_style_project_runs_as_its_readme_says(tmp_path):
    """examples/lightning_docs, with its README's command (shrunk by overrides)."""
    docs = REPO / "examples" / "lightning_docs"
    result = tuner_here("sweep", "--config-dir", str(docs / "conf"), "model=docs_mlp",
                        "data=docs_digits", "search=docs_space", "n_trials=2", *FAST,
                        cwd=tmp_path, env={"PYTHONPATH": str(docs)})
    assert result.returncode == 0, result.stdout + result.stderr
    study = load_study(tmp_path / "runs", "docs_digits-docs_mlp")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert {"model.lr", "data.batch_size"} <= set(study.trials[0].params)
