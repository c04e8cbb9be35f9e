"""A trained model compressed: int8 weights, pruned weights, or quantization-aware training.

``compress.method`` of a trial's config says how (conf/compress/):

    int8    post-training: each Linear layer's weights stored as int8, one scale per output
            row (torchao's ``IntxWeightOnlyConfig``); activations stay float. torchao's
            int8 kernels for Conv layers are GPU-only, so those stay float.
    prune   ``torch.nn.utils.prune``: the smallest weights of every Linear and Conv layer
            (by magnitude, or whole output rows by L2 norm) set to zero, made permanent.
    qat     from ``compress.qat_start_epoch`` the Linear layers train fake-quantized
            (:class:`QuantizationAwareTraining`), then are converted to int8 as above.

A weight that two layers share (a language model's tied embedding and output layer) is
left as trained: compressing it in one of them would untie it. Compression never changes
the module it is given: it returns a compressed copy, in eval mode, on the CPU (where the
model is measured and served), in float32 whatever precision it trained in. The same
function compresses a trial's model after it trains and the champion's rebuilt from its
kept weights where it is exported (tuner.trial.served), so the model served is the one
measured (the methods are deterministic; QAT's converted model equals int8 of its
trained weights).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch

from tuner.core.quiet import quiet_torchao

PRUNED_TYPES = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)


class NothingToCompress(ValueError):
    """The model has no layer the method compresses."""


def compress(module: torch.nn.Module, settings: Any) -> torch.nn.Module:
    """A compressed copy of ``module`` by ``settings`` (a trial's ``compress`` node)."""
    method = settings.method
    trained_with_qat = _has_fake_quantization(module)
    if method in ("int8", "qat") and trained_with_qat:  # its fake-quantized layers converted
        out = copy.deepcopy(module).cpu().float().eval()
        _quantize(out, step="convert", names={id(layer) for layer in _fake_quantized(out)})
        return out
    out = float_copy(module)
    if method == "none":
        return out
    layers = compressible(out, method)
    if not layers:
        raise NothingToCompress(
            f"{type(module).__name__} has no layer that compress={method} compresses "
            f"({_kinds(method)}, with a weight of its own)")
    if method == "prune":
        _prune(layers, float(settings.amount), bool(settings.structured))
    else:
        _quantize(out, names={id(layer) for layer in layers})
    return out


def float_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``module`` in float32, eval mode, on the CPU (a module trained in bf16 or
    fp16 weights too): a QAT-trained module with its fake quantization taken out (what
    the trial would serve without compression)."""
    out = copy.deepcopy(module).cpu().float().eval()
    if not _has_fake_quantization(out):
        return out
    fake = {id(layer) for layer in _fake_quantized(out)}
    return _swap_layers(out, lambda layer: layer.to_linear() if id(layer) in fake else None)


def compressible(module: torch.nn.Module, method: str) -> list[torch.nn.Module]:
    """The layers ``method`` compresses in ``module``: Linear layers (and Conv ones when
    pruning) whose weight no other layer shares."""
    kinds = PRUNED_TYPES if method == "prune" else (torch.nn.Linear,)
    owners: dict[int, int] = {}
    for layer in module.modules():
        for param in layer.parameters(recurse=False):
            owners[id(param)] = owners.get(id(param), 0) + 1
    return [layer for layer in module.modules()
            if isinstance(layer, kinds) and owners.get(id(layer.weight), 0) == 1]


def structure_like(module: torch.nn.Module, settings: Any) -> torch.nn.Module:
    """``module`` given the form of its compressed self (int8 layers where ``compress``
    puts them), for loading a compressed model's state dict into (with ``assign``)."""
    if settings.method in ("int8", "qat"):
        layers = compressible(module, "int8")
        _quantize(module, names={id(layer) for layer in layers})
        plain_tensors(module)  # as it is exported (tuner.trial.served)
    return module.eval()


class Int8Linear(torch.nn.Module):
    """A Linear layer with int8 weights as tuner exports it: the int8 data, one scale and
    zero point per output row, held as plain buffers. torch.export pickles torchao's
    weight tensors (and loads them back with ``weights_only=False``), and a graph of
    torchao's own operators loads only where torchao is imported; this layer's forward is
    torchao's weight-only path in plain PyTorch (dequantize as torchao does, then
    ``linear``), so its output is the measured model's, bit for bit."""

    def __init__(self, qdata: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor,
                 bias: torch.nn.Parameter | None):
        super().__init__()
        self.register_buffer("qdata", qdata)
        self.register_buffer("scale", scale)
        self.register_buffer("zero_point", zero_point)
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = self.scale.dtype
        weight = (self.qdata.to(dtype) - self.zero_point.to(dtype)) * self.scale
        return torch.nn.functional.linear(x, weight, self.bias)


def plain_tensors(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` with each Linear layer of torchao int8 weights replaced by an
    :class:`Int8Linear` of the same numbers (in place; returned for chaining). A module
    without int8 weights is left as it is."""
    def plain(layer: torch.nn.Module) -> Int8Linear | None:
        weight = getattr(layer, "weight", None)
        if not (isinstance(layer, torch.nn.Linear) and hasattr(weight, "qdata")):
            return None
        return Int8Linear(weight.qdata, weight.scale.view(-1, 1),
                          weight.zero_point.view(-1, 1), layer.bias)

    return _swap_layers(module, plain)


def _swap_layers(module: torch.nn.Module,
                 replace: Callable[[torch.nn.Module], torch.nn.Module | None]
                 ) -> torch.nn.Module:
    """``module`` with each layer that ``replace`` gives a replacement for (not None)
    swapped for it, in place; returned for chaining."""
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            new = replace(child)
            if new is not None:
                setattr(parent, name, new)
    return module


class QuantizationAwareTraining(pl.Callback):
    """Fake-quantizes the Linear layers from epoch ``start`` (0-based) on: forward passes
    see int8 weights, gradients reach the float ones (torchao's QAT ``prepare``). The
    layers keep their parameters, so the optimizer's state carries on; a trial resumed
    past ``start`` is prepared again when its first epoch starts."""

    def __init__(self, start: int):
        self.start = start

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch >= self.start and not _fake_quantized(pl_module):
            _quantize(pl_module, step="prepare",
                      names={id(layer) for layer in compressible(pl_module, "qat")})


def _int8_config():
    from torchao.quantization import IntxWeightOnlyConfig, PerAxis

    return IntxWeightOnlyConfig(weight_dtype=torch.int8, granularity=PerAxis(0))


def _quantize(module: torch.nn.Module, step: str | None = None,
              names: set[int] | None = None) -> None:
    """torchao's ``quantize_`` with tuner's int8 scheme; ``step``: QAT's prepare or convert;
    ``names``: the ids of the layers to touch (None: every one torchao picks)."""
    quiet_torchao()
    from torchao.quantization import quantize_
    from torchao.quantization.qat import QATConfig

    config = _int8_config() if step is None else QATConfig(_int8_config(), step=step)
    chosen = None if names is None else (lambda layer, _fqn: id(layer) in names)
    if chosen is None:
        quantize_(module, config)
    else:
        quantize_(module, config, filter_fn=chosen)


def _has_fake_quantization(module: torch.nn.Module) -> bool:
    # By name: torchao is imported only for a model that uses it.
    return any(type(layer).__name__ == "FakeQuantizedLinear" for layer in module.modules())


def _fake_quantized(module: torch.nn.Module) -> list[torch.nn.Module]:
    quiet_torchao()
    from torchao.quantization.qat import FakeQuantizedLinear

    return [layer for layer in module.modules() if isinstance(layer, FakeQuantizedLinear)]


def _prune(layers: list[torch.nn.Module], amount: float, structured: bool) -> None:
    from torch.nn.utils import prune

    for layer in layers:
        if structured:  # whole output rows (channels of a Conv) by their L2 norm
            prune.ln_structured(layer, "weight", amount=amount, n=2, dim=0)
        else:
            prune.l1_unstructured(layer, "weight", amount=amount)
        prune.remove(layer, "weight")  # the zeros written into the weight itself


def _kinds(method: str) -> str:
    return "Linear or Conv layers" if method == "prune" else "Linear layers"
