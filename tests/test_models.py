"""Every built-in model trains on its data; optimizers, schedules and data loading behave."""

from __future__ import annotations

import gzip
import itertools
import math
import struct

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from tests.conftest import compose
from tuner.core.quiet import quiet_lightning
from tuner.data.batches import TensorBatches
from tuner.data.mnist import read_idx
from tuner.models.optim import OptimSettings, build_optimizer, lr_factor
from tuner.trial.build import build_objects, build_trainer


def fit_few_steps(cfg, steps=8):
    """Fit `steps` training batches and one validation pass with the trial's Trainer."""
    quiet_lightning()
    pl.seed_everything(0, verbose=False)
    datamodule, module = build_objects(cfg)
    trainer = build_trainer(cfg.trainer, max_epochs=1, limit_train_batches=steps,
                            limit_val_batches=2)
    before = [p.detach().clone() for p in module.parameters()]
    trainer.fit(module, datamodule=datamodule)
    changed = any(not torch.equal(b, p) for b, p in zip(before, module.parameters(),
                                                         strict=True))
    return trainer.callback_metrics, changed, module


@pytest.mark.parametrize(("overrides", "metrics"), [
    (["model=mlp"], ["train_loss", "val_loss", "val_acc", "param_count"]),
    (["model=cnn"], ["train_loss", "val_loss", "val_acc", "param_count"]),
    (["experiment=diabetes"], ["train_loss", "val_loss", "val_rmse"]),
    (["experiment=shakespeare"], ["train_loss", "val_loss"]),
])
def test_builtin_model_trains(overrides, metrics, tmp_path):
    logged, changed, _ = fit_few_steps(compose(*overrides, run_dir=tmp_path).cfg)
    assert changed, "no parameter moved"
    for name in metrics:
        assert name in logged and math.isfinite(float(logged[name])), name


def test_char_gpt_learns_and_generates(tmp_path):
    cfg = compose("experiment=shakespeare", "model.lr=0.01", run_dir=tmp_path).cfg
    logged, _, module = fit_few_steps(cfg, steps=30)
    assert float(logged["val_loss"]) < math.log(256) - 1.0  # far better than uniform bytes
    prompt = torch.tensor([list(b"ROMEO:")])
    out = module.eval().generate(prompt, new_tokens=20)
    assert out.shape == (1, 26) and torch.equal(out[:, :6], prompt)


def write_idx(path, array: np.ndarray, compress=False):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    # Closed explicitly: Python 3.12 loses a gzip file's data if it is never closed.
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(data)


@pytest.fixture
def mnist_dir(tmp_path):
    """Tiny IDX files in MNIST's layout: class c is a bright c-th row band."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=300)
    images = rng.integers(0, 40, size=(300, 28, 28))
    for i, c in enumerate(labels):
        images[i, 2 * c:2 * c + 3, :] = 250
    folder = tmp_path / "mnist"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte.gz", images, compress=True)
    write_idx(folder / "train-labels-idx1-ubyte.gz", labels, compress=True)
    write_idx(folder / "t10k-images-idx3-ubyte", images[:50])
    write_idx(folder / "t10k-labels-idx1-ubyte", labels[:50])
    return folder, images, labels


def test_read_idx_round_trips(mnist_dir):
    folder, images, labels = mnist_dir
    assert np.array_equal(read_idx(folder / "train-images-idx3-ubyte.gz"), images)
    assert np.array_equal(read_idx(folder / "t10k-labels-idx1-ubyte"), labels[:50])


def test_read_idx_rejects_other_files(tmp_path):
    bad = tmp_path / "x"
    bad.write_bytes(b"\x89PNG....")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(bad)
    truncated = tmp_path / "y"
    truncated.write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"\x00" * 3)
    with pytest.raises(ValueError, match="promises 10 bytes"):
        read_idx(truncated)


def test_mnist_from_idx_files_trains(mnist_dir, tmp_path):
    folder, _, _ = mnist_dir
    cfg = compose("experiment=mnist", f"data.path={folder}", "data.batch_size=32",
                  run_dir=tmp_path).cfg
    logged, changed, _ = fit_few_steps(cfg, steps=8)
    assert changed and math.isfinite(float(logged["val_acc"]))
    datamodule, _ = build_objects(cfg)
    datamodule.setup("fit")
    assert len(datamodule.train_tensors[0]) + len(datamodule.val_tensors[0]) == 300
    x, _ = next(iter(datamodule.test_dataloader()))
    assert x.shape == (50, 784) and float(x.max()) <= 1.0


def test_mnist_missing_files_name_the_key(tmp_path):
    cfg = compose("experiment=mnist", f"data.path={tmp_path}", run_dir=tmp_path).cfg
    datamodule, _ = build_objects(cfg)
    with pytest.raises(FileNotFoundError, match=r"data\.path"):
        datamodule.setup("fit")


def test_tensor_batches_cover_every_row_once_per_epoch():
    x = torch.arange(10)
    batches = TensorBatches(x, x * 2, batch_size=4, shuffle=True)
    assert len(batches) == 3
    seen = torch.cat([b[0] for b in batches])
    assert sorted(seen.tolist()) == list(range(10))
    assert all(torch.equal(b[1], b[0] * 2) for b in batches)  # rows stay aligned
    assert len(TensorBatches(x, batch_size=4, drop_last=True)) == 2


@pytest.mark.parametrize("name", ["sgd", "adagrad", "rmsprop", "adam", "adamw"])
def test_each_optimizer_builds_and_decays_only_weights(name):
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    settings = OptimSettings(optimizer=name, lr=0.1, weight_decay=0.01,
                             momentum=0.9 if name in ("sgd", "rmsprop") else 0.0)
    optimizer = build_optimizer(model.named_parameters(), settings)
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 0.01 and plain["weight_decay"] == 0.0
    assert [p.shape for p in decayed["params"]] == [torch.Size([3, 4])]
    assert len(plain["params"]) == 3  # linear bias, norm weight and bias


def test_sgd_with_momentum_and_nesterov():
    model = torch.nn.Linear(2, 1)
    optimizer = build_optimizer(model.named_parameters(),
                                OptimSettings("sgd", 0.1, momentum=0.9, nesterov=True))
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["momentum"] == 0.9 and optimizer.defaults["nesterov"]


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"optimizer": "lion"}, "model.optimizer"),
    ({"lr": 0.0}, "model.lr"),
    ({"nesterov": True}, "model.nesterov"),
    ({"lr_schedule": "cyclic"}, "model.lr_schedule"),
    ({"warmup_fraction": 1.0}, "model.warmup_fraction"),
])
def test_bad_optimizer_settings_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        OptimSettings(**kwargs)


@pytest.mark.parametrize("schedule", ["cosine", "linear", "exponential"])
def test_schedules_warm_up_then_decay_to_the_final_factor(schedule):
    s = OptimSettings(lr_schedule=schedule, warmup_fraction=0.1, lr_final_factor=0.05)
    factors = [lr_factor(step, 100, s) for step in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0)
    assert factors[-1] == pytest.approx(0.05)
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))  # monotone


def test_constant_schedule_stays_at_peak():
    s = OptimSettings(lr_schedule="constant")
    assert {lr_factor(step, 50, s) for step in range(50)} == {1.0}


def test_accumulation_and_clipping_reach_the_trainer(tmp_path):
    cfg = compose("trainer.accumulate_grad_batches=3", "trainer.gradient_clip_val=0.5",
                  "trainer.gradient_clip_algorithm=value", run_dir=tmp_path).cfg
    trainer = build_trainer(cfg.trainer)
    assert trainer.accumulate_grad_batches == 3
    assert trainer.gradient_clip_val == 0.5 and trainer.gradient_clip_algorithm == "value"
    datamodule, module = build_objects(cfg)
    trainer = build_trainer(cfg.trainer, max_epochs=1)
    trainer.fit(module, datamodule=datamodule)
    batches = math.ceil(1437 / 64)  # digits training rows / batch size
    assert trainer.global_step == math.ceil(batches / 3)  # one optimizer step per 3 batches


@pytest.mark.gpu
def test_gpu_bf16_trial_trains(tmp_path):
    cfg = compose("trainer=gpu", run_dir=tmp_path).cfg
    logged, changed, _ = fit_few_steps(cfg, steps=8)
    assert changed and math.isfinite(float(logged["val_acc"]))


def test_example_input_from_batches_and_module(tmp_path):
    from tuner.trial.build import example_input

    cfg = compose(run_dir=tmp_path).cfg
    datamodule, module = build_objects(cfg)
    datamodule.setup("fit")
    (x,) = example_input(module, datamodule)
    assert x.shape == (2, 64)
    module.example_input_array = (torch.zeros(3, 64), torch.zeros(3, 64))
    assert len(example_input(module, datamodule)) == 2

    class DictBatches:
        def val_dataloader(self):
            return [{"x": torch.zeros(4, 3)}]

    module.example_input_array = None
    with pytest.raises(ValueError, match=r"set self\.example_input_array"):
        example_input(module, DictBatches())


def test_fast_hook_name_leaves_module_registration_alone():
    """TunableModule sets Lightning's hook name as a plain attribute (speed); anything
    else assigned to a module still registers as a parameter, buffer or submodule."""
    from tuner.models.mlp import MLPClassifier

    module = MLPClassifier(input_dim=4, num_classes=2, width=3, depth=1)
    module._current_fx_name = "training_step"
    module.head = torch.nn.Linear(2, 2)
    module.scale = torch.nn.Parameter(torch.ones(1))
    module.register_buffer("steps", torch.zeros(1))
    assert module._current_fx_name == "training_step"
    assert "head" in dict(module.named_children())
    assert {"scale", "head.weight"} <= {n for n, _ in module.named_parameters()}
    assert "steps" in module.state_dict()
    assert "_current_fx_name" not in module.state_dict()
    module.scale = None  # a registered parameter set to None stays a parameter slot
    assert "scale" in module._parameters


def _hydra_and_flat(node):
    """What Hydra's instantiate and tuner's fast path each build from ``node`` (or raise,
    as BuildError reports it)."""
    return _hydra_and_flat_each(node, node)


def _hydra_and_flat_each(for_hydra, for_tuner):
    from hydra.utils import instantiate

    from tuner.trial.build import BuildError, instantiate_flat

    results = []
    for build in (lambda: instantiate(for_hydra, _convert_="all"),
                  lambda: instantiate_flat(for_tuner)):
        try:
            results.append(build())
        except Exception as error:
            results.append(str(BuildError("model", error)))
    return results


def test_models_build_as_hydra_builds_them_whatever_their_config_asks(tmp_path):
    """tuner builds a trial's data and model without Hydra's per-call cost when their
    config is a Lightning class with plain arguments; anything more goes to Hydra."""
    from omegaconf import OmegaConf

    from tuner.models.mlp import MLPClassifier

    mlp = {"_target_": "tuner.models.mlp.MLPClassifier", "input_dim": 4, "num_classes": 3,
           "width": 5, "depth": 1, "lr": 0.01}
    hydra_built, fast_built = _hydra_and_flat(OmegaConf.create(mlp))
    assert type(fast_built) is MLPClassifier and repr(fast_built) == repr(hydra_built)
    # Interpolations resolve against the whole config, as in a trial's.
    whole = OmegaConf.create({"data": {"num_features": 4}, "model": {**mlp, "input_dim":
                                                                     "${data.num_features}"}})
    hydra_built, fast_built = _hydra_and_flat(whole.model)
    assert fast_built.net[0].in_features == hydra_built.net[0].in_features == 4
    # A nested _target_ is built by Hydra first and handed over as an object.
    nested = OmegaConf.create({"_target_": "torch.nn.Sequential", "_args_": [
        {"_target_": "torch.nn.Linear", "in_features": 3, "out_features": 2}]})
    hydra_built, fast_built = _hydra_and_flat(nested)
    assert isinstance(fast_built[0], torch.nn.Linear) and repr(fast_built) == repr(hydra_built)
    # _partial_ gives a factory, not an object.
    partial = OmegaConf.create({"_target_": "torch.nn.Linear", "_partial_": True,
                                "in_features": 3})
    hydra_built, fast_built = _hydra_and_flat(partial)
    assert fast_built(out_features=4).weight.shape == hydra_built(out_features=4).weight.shape
    # Errors read the same: a constructor's own, a missing value, a target that does not
    # exist.
    for bad in ({**mlp, "width": 0}, {**mlp, "width": "???"},
                {"_target_": "tuner.models.mlp.NoSuchModel", "input_dim": 3}):
        hydra_error, fast_error = _hydra_and_flat(OmegaConf.create(bad))
        assert isinstance(fast_error, str) and fast_error == hydra_error
        assert fast_error.startswith("model cannot be built: ")
    # A config cannot call through tuner what Hydra's target policy refuses to call: a
    # function goes to Hydra, which refuses it (or, in a Hydra without that policy,
    # calls it for both).
    for kept in ("by-hydra", "by-tuner"):
        (tmp_path / kept).write_text("keep me")
    hydra_error, fast_error = (
        result for result in _hydra_and_flat_each(
            OmegaConf.create({"_target_": "os.remove", "path": str(tmp_path / "by-hydra")}),
            OmegaConf.create({"_target_": "os.remove", "path": str(tmp_path / "by-tuner")})))
    assert (tmp_path / "by-tuner").exists() == (tmp_path / "by-hydra").exists()
    assert str(fast_error).replace("by-tuner", "by-hydra") == str(hydra_error)
