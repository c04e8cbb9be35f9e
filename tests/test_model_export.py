"""The best trial's model is exported once, at the end of the sweep, from the weights that
each new best kept while the sweep ran (tuner.trial.model); a sweep killed before its
end leaves the best's weights, and `tuner sync` exports them and moves the champion."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import optuna
import pytest

from tests.conftest import MODELS, client_for, load_study, start, stop, sweep, tuner_here
from tuner.core import attrs
from tuner.study.trial_attrs import trial_attr
from tuner.tracking.links import model_uri_of
from tuner.tracking.registry import current_champion
from tuner.trial.weights import drop_beaten

# With FAST's slots=1 the study repeats exactly: trials 0, 1 and 3 each beat the best.
SEVERAL_BESTS = ("n_trials=4", "seed=1", MODELS)


def _weights_left(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "trials").rglob("model.pt*"))


def test_a_sweep_with_several_new_bests_exports_one_model(tmp_path):
    run_dir = tmp_path / "runs"
    study = sweep(*SEVERAL_BESTS, run_dir=run_dir).study
    kept = [t.number for t in study.trials if trial_attr(t, attrs.MODEL_WEIGHTS_ATTR) is not None]
    assert len(kept) >= 2, kept  # each new best kept its weights as it ended
    client = client_for(run_dir)
    experiment = client.get_experiment_by_name("digits-mlp").experiment_id
    [model] = client.search_logged_models([experiment])  # one export, not one per best
    best = study.best_trial
    assert model.source_run_id == best.user_attrs[attrs.RUN_ID_ATTR]
    assert model_uri_of(best, study.user_attrs) == model.model_uri
    assert current_champion(client, "digits-mlp").trial_number == best.number
    assert _weights_left(run_dir) == []  # exported, and the beaten ones deleted


def test_weights_left_by_a_killed_sweep_are_exported_by_tuner_sync(tmp_path):
    process = start(["sweep", "n_trials=40", "trainer.max_epochs=30", "slots=1",
                     "tracking.report=false"], tmp_path, env={"PYTHONUNBUFFERED": "1"})
    lines = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not any(s.startswith("trial ") for s in lines):
            lines.append(process.stdout.readline())
        assert any(line.startswith("trial ") for line in lines), "".join(lines)
        os.killpg(process.pid, signal.SIGKILL)  # no end of the sweep: nothing exported
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            stop(process)
    run_dir = tmp_path / "runs"
    study = load_study(run_dir)
    best = study.best_trial
    weights = Path(trial_attr(best, attrs.MODEL_WEIGHTS_ATTR))
    assert weights.is_file()  # beside the trial's checkpoint
    assert weights.parent == run_dir.resolve() / "trials" / "digits-mlp" / str(best.number)
    assert model_uri_of(best, study.user_attrs) is None
    client = client_for(run_dir)
    assert current_champion(client, "digits-mlp") is None

    result = tuner_here("sync", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"exported trial {best.number}'s model" in result.stdout, result.stdout
    assert "champion: promoted to models:/digits-mlp@champion (version 1" in result.stdout
    study = load_study(run_dir)
    champion = current_champion(client, "digits-mlp")
    assert champion.trial_number == best.number
    assert champion.run_id == best.user_attrs[attrs.RUN_ID_ATTR]
    assert model_uri_of(study.best_trial, study.user_attrs) is not None
    assert not weights.exists()

    again = tuner_here("sync", cwd=tmp_path)
    assert again.returncode == 0 and "nothing to sync" in again.stdout, again.stdout


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_only_weights_strictly_worse_than_the_best_are_deleted(tmp_path, direction):
    """Only the best's weights can ever be exported: the rest go, but never a trial's
    that ties with the best (it may be the one exported) or is better than it."""
    study = optuna.create_study(direction=direction)
    values = [0.5, 0.9, 0.9, 0.7] if direction == "maximize" else [0.9, 0.5, 0.5, 0.7]
    files = []
    for number, value in enumerate(values):
        kept = tmp_path / str(number) / "model.pt"
        kept.parent.mkdir()
        kept.write_bytes(b"weights")
        files.append(kept)
        study.add_trial(optuna.trial.create_trial(
            value=value, system_attrs={attrs.MODEL_WEIGHTS_ATTR: str(kept)}))
    drop_beaten(study)
    assert [f.exists() for f in files] == [False, True, True, False]


@pytest.mark.parametrize("preset", ["model=mlp", "experiment=diabetes"])
def test_the_served_model_takes_raw_values_and_answers_in_raw_units(tmp_path, preset):
    """The data modules scale their data (digits' pixels / 16, diabetes standardised):
    the exported model includes that scaling, so the model server takes the values a
    person holds, and a regression answers in the target's own units."""
    import torch
    from omegaconf import OmegaConf

    from tests.conftest import compose
    from tuner.trial.build import build_objects
    from tuner.trial.served import for_serving, trained_weights

    cfg = compose(preset, run_dir=tmp_path).cfg
    config_yaml = OmegaConf.to_yaml(cfg)
    datamodule, module = build_objects(cfg)
    datamodule.setup("fit")
    module.eval()
    scaled = datamodule.val_tensors[0][:8]
    served, (example,) = for_serving(config_yaml, module, (scaled,))
    inputs, outputs = datamodule.serving_transforms()
    raw = inputs.inverse(scaled)
    assert torch.allclose(example, raw)  # MLflow's signature and example are raw values
    with torch.no_grad():
        trained = module(scaled)
        answer = served(raw)
    expected = trained if outputs is None else outputs(trained)
    assert torch.allclose(answer, expected, atol=1e-5)
    if preset == "model=mlp":  # the pixels as scikit-learn gives them: 0..16
        from sklearn.datasets import load_digits

        assert raw.max() <= 16 and set(torch.unique(raw).tolist()) <= set(
            float(v) for v in load_digits().data.ravel())
    else:  # the disease progression in its own units (25..346 in the data), not z-scores
        assert answer.abs().mean() > 10
    # A scheduled round re-validates the champion from the trained module's weights.
    assert trained_weights(served.state_dict()).keys() == module.state_dict().keys()
