"""`tuner init`: from a user's two classes to a running sweep in two commands."""

from __future__ import annotations

import os

import yaml

from tests.conftest import FAST, REPO, load_study, tuner_here

DOCS_PROJECT = REPO / "examples" / "lightning_docs"
TEMPLATE_PROJECT = REPO / "examples" / "lightning_hydra"


def on_path(project) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(
        p for p in (str(project), os.environ.get("PYTHONPATH")) if p)}


def test_init_writes_a_config_folder_that_runs_a_sweep_unchanged(tmp_path):
    env = on_path(DOCS_PROJECT)
    made = tuner_here("init", "docs_lit.DigitsClassifier", "docs_lit.DigitsData",
                      cwd=tmp_path, env=env)
    assert made.returncode == 0, made.stderr
    assert "metric: val_acc (maximize)" in made.stdout
    assert "next: tuner sweep --config-dir conf experiment=digits_classifier" in made.stdout
    model = yaml.safe_load((tmp_path / "conf/model/digits_classifier.yaml").read_text())
    assert model == {"_target_": "docs_lit.DigitsClassifier", "width": 128, "dropout": 0.1,
                     "lr": 0.001, "weight_decay": 0.0}
    search = yaml.safe_load((tmp_path / "conf/search/digits_classifier.yaml").read_text())
    assert search["model"]["lr"] == {"type": "float", "low": 0.0001, "high": 0.01, "log": True}
    assert search["model"]["dropout"] == {"type": "float", "low": 0.0, "high": 0.5}
    assert search["data"]["batch_size"] == {"type": "categorical", "choices": [32, 64, 128]}

    swept = tuner_here("sweep", "--config-dir", "conf", "experiment=digits_classifier",
                       "n_trials=2", *FAST, cwd=tmp_path, env=env)
    assert swept.returncode == 0, swept.stdout + swept.stderr
    study = load_study(tmp_path / "runs", "digits_data-digits_classifier")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert set(study.trials[0].params) == {"model.width", "model.dropout", "model.lr",
                                           "model.weight_decay", "data.batch_size"}


def test_init_marks_what_it_cannot_fill_in_and_writes_no_metric_it_did_not_see(tmp_path):
    """A template-style module takes its network and optimizer as objects: no defaults."""
    made = tuner_here("init", "src.models.digits_module.DigitsLitModule",
                      "src.data.digits_datamodule.DigitsDataModule", "--dir", "configs",
                      cwd=tmp_path, env=on_path(TEMPLATE_PROJECT))
    assert made.returncode == 0, made.stderr
    assert "metric: not found (net, optimizer need values" in made.stdout
    model = (tmp_path / "configs/model/digits_lit_module.yaml").read_text()
    assert "net: ???  # Module" in model and "scheduler: null" in model
    preset = (tmp_path / "configs/experiment/digits_lit_module.yaml").read_text()
    assert "metric: ???" in preset


def test_init_refuses_before_writing_anything(tmp_path):
    env = on_path(DOCS_PROJECT)
    wrong = tuner_here("init", "docs_lit.Nowhere", "docs_lit.DigitsData", cwd=tmp_path, env=env)
    assert wrong.returncode == 2
    assert "command line: MODULE_CLASS: cannot import 'docs_lit.Nowhere'" in wrong.stderr
    swapped = tuner_here("init", "docs_lit.DigitsData", "docs_lit.DigitsClassifier",
                         cwd=tmp_path, env=env)
    assert swapped.returncode == 2
    assert "'docs_lit.DigitsData' is not a lightning.pytorch.LightningModule" in swapped.stderr
    assert not (tmp_path / "conf").exists()

    (tmp_path / "conf/search").mkdir(parents=True)
    (tmp_path / "conf/search/digits_classifier.yaml").write_text("mine: {}\n")
    again = tuner_here("init", "docs_lit.DigitsClassifier", "docs_lit.DigitsData",
                       cwd=tmp_path, env=env)
    assert again.returncode == 2
    assert "conf/search/digits_classifier.yaml: exists already" in again.stderr
    assert "pass --force" in again.stderr
    assert (tmp_path / "conf/search/digits_classifier.yaml").read_text() == "mine: {}\n"
    assert not (tmp_path / "conf/model").exists()
