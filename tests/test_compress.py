"""Compression as part of the objective: compressed models measured, searched over, served.

Two sweeps through the real CLI are shared by the module: one with ``compress=int8`` (its
champion served and re-validated), one with the method searched over two objectives (its
front in the report, in Chromium). The compression itself is checked on real modules: the
share of weights pruned, a tied weight left alone, QAT's layers fake-quantized from their
epoch, and the model rebuilt for the export equal to the one measured.
"""

from __future__ import annotations

import json
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import (
    FIXTURE_CONF,
    client_for,
    fixtures_env,
    load_study,
    plan,
    run_tuner,
    start,
    stop,
    trial_runs,
    tuner_here,
)
from tests.servers import free_port
from tuner.core import attrs
from tuner.core.measures import FLOAT_LATENCY, FLOAT_SIZE, LATENCY, SIZE

SMALL = ("trainer.max_epochs=2", "slots=2")
FIGURES = {"compressed/val_acc", SIZE, LATENCY, FLOAT_SIZE, FLOAT_LATENCY}
# seed=1: the 6 trials draw every method (none, int8 x3, prune, qat)
SEARCHED = ("study_name=digits-mlp-front", "n_trials=6", "compress=int8", "seed=1",
            "metric=[compressed/val_acc,model/latency_ms]", "direction=[maximize,minimize]",
            "sampler=nsga2", "pruner=none", "compress.qat_start_epoch=1",
            "+search.compress.method={type:categorical,choices:[none,int8,prune,qat]}",
            "+search.compress.amount={type:float,low:0.3,high:0.8,when:{compress.method:prune}}")


@pytest.fixture(scope="module")
def int8_sweep(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("int8")
    result = run_tuner("sweep", "compress=int8", "n_trials=4", *SMALL, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    return cwd, result


@pytest.fixture(scope="module")
def searched_sweep(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("searched")
    result = run_tuner("sweep", *SEARCHED, *SMALL, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    return cwd, result


def _complete(cwd, name="digits-mlp"):
    return [t for t in load_study(cwd / "runs", name).trials if t.state.name == "COMPLETE"]


def test_every_complete_trial_is_measured_on_its_run_and_in_the_leaderboard(int8_sweep):
    cwd, result = int8_sweep
    trials = _complete(cwd)
    assert len(trials) == 4 and result.stderr == ""
    runs = {r.data.tags["tuner.trial_number"]: r for r in trial_runs(cwd / "runs", "digits-mlp")}
    for t in trials:
        measured = t.user_attrs[attrs.MEASURED_ATTR]
        assert set(measured) >= FIGURES and t.user_attrs[attrs.COMPRESSED_WITH_ATTR] == "int8"
        # int8 weights: a byte where float32 takes four (biases and row scales stay float,
        # and torch.save's own overhead stays the same)
        assert measured[FLOAT_SIZE] - measured[SIZE] > 2 * measured["param_count"] / 1e6
        assert measured[LATENCY] > 0 and measured[FLOAT_LATENCY] > 0
        assert abs(measured["compressed/val_acc"] - t.values[0]) < 0.1  # int8 costs little
        run = runs[str(t.number)].data.metrics
        assert {k: run[k] for k in FIGURES} == {k: measured[k] for k in FIGURES}
    best = max(trials, key=lambda t: t.values[0])
    assert f"best trial {best.number}: val_acc=" in result.stdout
    assert "compressed (int8): val_acc " in result.stdout and "x smaller" in result.stdout
    said = tuner_here("best", cwd=cwd)
    assert "compressed (int8): val_acc" in said.stdout


def test_the_leaderboard_has_the_figures_beside_each_trial(int8_sweep):
    cwd, _ = int8_sweep
    client = client_for(cwd / "runs")
    study = load_study(cwd / "runs")
    parent = study.user_attrs[attrs.PARENT_RUN_ATTR]
    path = client.download_artifacts(parent, "leaderboard.json", str(cwd))
    rows = json.loads(Path(path).read_text())
    assert {"compressed_with", "compressed/val_acc", SIZE, LATENCY, FLOAT_SIZE,
            FLOAT_LATENCY} <= set(rows[0])
    assert all(row["compressed_with"] == "int8" for row in rows)


def test_the_champion_is_the_int8_model_served_and_revalidated_as_measured(int8_sweep):
    import mlflow
    import mlflow.pytorch

    from tuner.app.schedule.champion import champion_on_round_data
    from tuner.tracking.registry import current_champion

    cwd, _ = int8_sweep
    uri = f"sqlite:///{cwd / 'runs' / 'mlflow.db'}"
    client = client_for(cwd / "runs")
    mlflow.set_tracking_uri(uri)  # as a scheduled round's process does (an earlier test
    mlflow.set_registry_uri(uri)  # in this process may have set another registry)
    champion = current_champion(client, "digits-mlp")
    loaded = mlflow.pytorch.load_model("models:/digits-mlp@champion")
    int8 = sorted(k for k, v in loaded.state_dict().items() if v.dtype == torch.int8)
    assert int8 == [f"tuner_trained.net.{i}.{n}" for i in (0, 3, 6)
                    for n in ("qdata", "zero_point")], int8
    # torch.export pickles torchao's weight tensors (and loads them with
    # weights_only=False): the int8 weights travel as plain buffers, none is pickled.
    (archive,) = (cwd / "runs" / "mlartifacts").rglob("model.pt2")
    with zipfile.ZipFile(archive) as z:
        stored = [json.loads(z.read(n))["config"] for n in z.namelist()
                  if n.endswith(("model_weights_config.json", "model_constants_config.json"))]
    assert len(stored) == 2 and stored[0]
    assert not [k for config in stored for k, v in config.items() if v["use_pickle"]], stored
    # A scheduled round measures the champion again: its int8 model on the same data
    # gives the figure its trial recorded.
    # The champion's value is its served (int8) model's, though the study ranks by the
    # float val_acc; a scheduled round measures that model again on the same data and
    # finds the same figure, so a challenger is held to what the champion serves.
    best = load_study(cwd / "runs").trials[champion.trial_number]
    served_acc = best.user_attrs[attrs.MEASURED_ATTR]["compressed/val_acc"]
    assert champion.value == served_acc
    version = client.get_model_version("digits-mlp", champion.version)
    assert version.tags["tuner.metric"] == "compressed/val_acc"
    sweep_plan = plan("compress=int8", run_dir=cwd / "runs")
    OmegaConf.update(sweep_plan.cfg, "tracking.tracking_uri", uri)
    assert champion_on_round_data(client, champion, sweep_plan) == served_acc
    # `tuner serve` answers with the compressed model's own output.
    from sklearn.datasets import load_digits

    x = load_digits().data[:16].astype("float32")
    with torch.inference_mode():
        own = loaded(torch.from_numpy(x)).numpy()
    port = free_port()
    process = start(["serve", "digits-mlp", "--port", str(port)], cwd)
    try:
        from tests.test_cli import said_ready

        lines = said_ready(process, f"at http://127.0.0.1:{port}/invocations")
        assert not [line for line in lines if "torchao" in line or "Enum subclass" in line]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"inputs": x.tolist()}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            served = np.asarray(json.load(response)["predictions"])
    finally:
        stop(process)
    np.testing.assert_allclose(served, own, rtol=0, atol=1e-5)


def test_a_searched_method_gives_each_trial_its_own_and_the_report_draws_the_front(
        searched_sweep):
    from tests.browser import WatchedPage, chromium, wait_for_plots

    cwd, result = searched_sweep
    trials = _complete(cwd, "digits-mlp-front")
    assert len(trials) == 6 and result.stderr == ""
    for t in trials:
        measured, method = t.user_attrs[attrs.MEASURED_ATTR], t.params["compress.method"]
        assert t.user_attrs[attrs.COMPRESSED_WITH_ATTR] == method
        assert t.values == [measured["compressed/val_acc"], measured[LATENCY]]
        if method == "none":  # the float model stands on the front as it is
            assert measured["compressed/val_acc"] == measured["val_acc"]
            assert (measured[SIZE], measured[LATENCY]) == (measured[FLOAT_SIZE],
                                                           measured[FLOAT_LATENCY])
        elif method in ("int8", "qat"):
            assert measured[FLOAT_SIZE] - measured[SIZE] > 2 * measured["param_count"] / 1e6
        else:  # pruned: zeros stored dense, the same size (give or take the pickle's names)
            assert abs(measured[SIZE] - measured[FLOAT_SIZE]) < 0.01 * measured[FLOAT_SIZE]
        assert ("compress.amount" in t.params) == (method == "prune")  # its `when`
    assert {t.params["compress.method"] for t in trials} == {"none", "int8", "prune", "qat"}
    result = tuner_here("report", "digits-mlp-front", "--out", "report.html", cwd=cwd)
    assert result.returncode == 0, result.stderr
    with chromium() as browser:
        page = WatchedPage(browser, width=1100)
        page.page.goto((cwd / "report.html").as_uri())
        assert wait_for_plots(page.page) != "error", page.errors
        figure = page.page.locator("figure:has(figcaption:has-text('Compression: each trial'))")
        assert figure.count() == 1
        figure.scroll_into_view_if_needed()
        legend = set(figure.locator(".legendtext").all_text_contents())
        methods = {t.params["compress.method"] for t in trials}
        assert legend == {"float model", "front (compressed)",
                          *(f"compressed: {m}" for m in methods)}, legend
        # a float and a compressed point per trial, a ring on each compressed one no
        # other beats on both latency and accuracy
        points = [(t.values[1], t.values[0]) for t in trials]
        front = {p for p in points if not any(q != p and q[0] <= p[0] and q[1] >= p[1]
                                              for q in points)}
        assert figure.locator(".scatterlayer .point").count() == 2 * len(trials) + len(front)
        assert page.page.locator("figure:has(figcaption:has-text('Pareto front'))").count() == 1
        figure.screenshot(path=str(page.screenshot("compression").with_name(
            "compression-figure.png")))
        assert not page.errors, page.errors


def test_a_ddp_trial_trains_on_its_ranks_and_is_measured(tmp_path):
    # A module logging a torchmetrics Metric, which syncs across processes whenever
    # torch.distributed is initialised: rank 0 validates the compressed copy alone.
    result = run_tuner("sweep", "--config-dir", str(FIXTURE_CONF), "model=torchmetrics_mlp",
                       "compress=qat", "n_trials=1", "trainer.max_epochs=2",
                       "devices_per_trial=2", "tracking.report=false", cwd=tmp_path,
                       env=fixtures_env())
    assert result.returncode == 0, result.stdout + result.stderr
    (trial,) = _complete(tmp_path, "digits-torchmetrics_mlp")
    assert trial.user_attrs[attrs.WORLD_SIZE_ATTR] == 2
    assert set(trial.user_attrs[attrs.MEASURED_ATTR]) >= FIGURES | {"compressed/val_tm_acc"}
    (run,) = trial_runs(tmp_path / "runs", "digits-torchmetrics_mlp")
    history = client_for(tmp_path / "runs").get_metric_history(run.info.run_id, SIZE)
    assert [m.step for m in history] == [2]  # at the epochs trained
    assert "compressed (qat): val_acc" in result.stdout


def _mlp(width=64):
    from tuner.models.mlp import MLPClassifier

    torch.manual_seed(0)
    return MLPClassifier(input_dim=64, num_classes=10, width=width, depth=2)


def _settings(method, **more):
    return OmegaConf.create({"method": method, "amount": 0.5, "structured": False,
                             "qat_start_epoch": 1, **more})


@pytest.mark.parametrize("structured", [False, True])
def test_pruning_zeroes_the_share_asked_of_every_layer_and_leaves_the_model_as_it_was(
        structured):
    from tuner.trial.compress import compress

    module = _mlp()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    small = compress(module, _settings("prune", amount=0.25, structured=structured))
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    linears = [m for m in small.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(not hasattr(m, "weight_orig") for m in linears)  # made permanent
    for layer in linears:
        weight = layer.weight
        if structured:  # whole output rows
            zero_rows = int((weight.abs().sum(dim=1) == 0).sum())
            assert zero_rows == round(0.25 * weight.shape[0])
        else:
            assert int((weight == 0).sum()) == round(0.25 * weight.numel())


def test_a_tied_weight_is_left_as_trained_and_the_rest_is_int8():
    from tuner.models.gpt import CharGPT
    from tuner.trial.compress import compress

    torch.manual_seed(0)
    model = CharGPT(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=16)
    small = compress(model, _settings("int8"))
    assert small.head.weight is small.tok.weight  # still tied, still float
    assert type(small.head.weight).__name__ == "Parameter"
    quantized = [n for n, m in small.named_modules() if isinstance(m, torch.nn.Linear)
                 and type(m.weight).__name__ == "IntxUnpackedToInt8Tensor"]
    assert len(quantized) == 4  # qkv, proj and the MLP's two
    tokens = torch.randint(0, 20, (2, 8))
    assert torch.allclose(small(tokens), model.eval()(tokens), atol=0.05)


def test_qat_fake_quantizes_from_its_epoch_and_the_export_rebuilds_the_model_measured(
        tmp_path):
    import lightning.pytorch as pl

    from tuner.trial.compress import QuantizationAwareTraining, compress
    from tuner.trial.served import TRAINED, rebuild_for_serving

    cfg = plan("compress=qat", "model.width=64", "model.depth=2", "model.dropout=0.0",
               run_dir=tmp_path).cfg
    from tuner.trial.build import build_objects

    datamodule, module = build_objects(cfg)
    seen = []

    class Watch(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            seen.append(sorted({type(m).__name__ for m in pl_module.modules()
                                if isinstance(m, torch.nn.Linear)}))

    first = module.net[0].weight
    trainer = pl.Trainer(max_epochs=3, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[QuantizationAwareTraining(1), Watch()])
    trainer.fit(module, datamodule=datamodule)
    assert seen == [["Linear"], ["FakeQuantizedLinear"], ["FakeQuantizedLinear"]]
    assert module.net[0].weight is first  # the optimizer trained the same parameter on
    measured = compress(module, cfg.compress)
    # The export, and the replay of a model that waited in the outbox, rebuild the float
    # module from the kept weights and compress it where it is served.
    x = torch.randn(5, 64)
    served, _ = rebuild_for_serving(OmegaConf.to_yaml(cfg), module.state_dict(), (x,))
    served = getattr(served, TRAINED)
    assert type(served.net[0]).__name__ == "Int8Linear"  # int8 buffers, served as measured
    with torch.inference_mode():
        assert torch.equal(measured(x), served(x))



def test_a_compressed_objective_is_pruned_on_the_float_curve_and_only_complete_trials_compress(
        tmp_path):
    from tests.conftest import sweep

    # Optuna's pruner reads what each epoch reports: the float val_acc the compressed one
    # is named after; no trial reaches 0.99 after one epoch, so each stops there.
    outcome = sweep("compress=int8", "metric=compressed/val_acc", "n_trials=3",
                    "pruner=threshold", "pruner.lower=0.99", "trainer.max_epochs=3",
                    run_dir=tmp_path / "runs")
    trials = outcome.study.trials
    assert [t.state.name for t in trials] == ["PRUNED"] * 3
    for t in trials:
        assert list(t.intermediate_values) == [1]  # the float val_acc of epoch 1
        assert attrs.MEASURED_ATTR not in t.user_attrs  # pruned: never compressed


def test_the_float_models_own_latency_is_an_objective_without_compressing(tmp_path):
    from tests.conftest import sweep

    outcome = sweep("metric=[val_acc,model/float_latency_ms]", "direction=[maximize,minimize]",
                    "pruner=none", "n_trials=2", run_dir=tmp_path / "runs")
    for t in outcome.study.trials:
        measured = t.user_attrs[attrs.MEASURED_ATTR]
        assert t.user_attrs[attrs.COMPRESSED_WITH_ATTR] == "none"
        assert t.values == [measured["val_acc"], measured[FLOAT_LATENCY]]


def test_a_float_champion_is_measured_again_on_its_float_size(tmp_path):
    """A study of the float model's own size (no compression) crowns a float model; a
    scheduled round measures that size again on it."""
    from tuner.config.plan import to_yaml
    from tuner.trial.build import build_objects
    from tuner.trial.compress import float_copy
    from tuner.trial.evaluate import validate_weights
    from tuner.trial.measure import size_mb

    sweep_plan = plan("metric=[val_acc,model/float_size_mb]", "direction=[maximize,minimize]",
                      "pruner=none", run_dir=tmp_path)
    _, module = build_objects(sweep_plan.cfg)
    again = validate_weights(to_yaml(sweep_plan.cfg), module.state_dict(), sweep_plan.cfg,
                             "model/float_size_mb")
    assert again == size_mb(float_copy(module))
