"""A complete trial's model compressed, validated again and measured, beside its float self.

After the fit, the owner of a trial (its slot, or rank 0 of its DDP ranks) compresses the
trained module as it is served (tuner.trial.compress: int8 weights in plain buffers),
runs Lightning's validation over the same validation data with it (no training) and
measures both models:

    compressed/<metric>    each metric the module logs in validation, of the compressed model
    model/size_mb          the compressed model's state dict as ``torch.save`` writes it
                           (10^6 bytes)
    model/latency_ms       its median forward time for one example, after a warm-up, on
                           ``compress.latency_threads`` threads, under ``torch.inference_mode``
    model/float_size_mb, model/float_latency_ms   the same of the model as trained

All of it on the CPU, where the model is served: a model trained on a GPU is copied to
the CPU first. A ``compress.method`` of ``none`` (one choice of a searched method) is
measured too: its compressed figures are the float model's, so it stands on the same front.
"""

from __future__ import annotations

import io
import statistics
import time

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig

from tuner.core.floats import as_computed
from tuner.core.measures import FLOAT_LATENCY, FLOAT_SIZE, LATENCY, SIZE, compressed
from tuner.core.quiet import quiet_lightning
from tuner.trial.build import build_trainer, example_input
from tuner.trial.compress import compress, float_copy, plain_tensors


def measure(cfg: DictConfig, module: pl.LightningModule, datamodule: pl.LightningDataModule
            ) -> dict[str, float]:
    """What the module above says, for a trial of config ``cfg`` whose fit trained
    ``module`` (left as it is)."""
    settings = cfg.compress
    float_model = float_copy(module)
    # the model as it is served (method none: the float model itself, not a second copy)
    small = (float_model if settings.method == "none"
             else plain_tensors(compress(module, settings)))
    figures = {compressed(name): value for name, value in
               validation_metrics(small, datamodule, cfg.trainer).items()}
    example = tuple(x[:1].cpu() for x in example_input(module, datamodule))
    timing = (int(settings.latency_runs), int(settings.latency_warmup),
              int(settings.latency_threads))
    figures[FLOAT_SIZE] = size_mb(float_model)
    figures[FLOAT_LATENCY] = latency_ms(float_model, example, *timing)
    if settings.method == "none":  # one model: timed once, so its two points are one
        figures[SIZE], figures[LATENCY] = figures[FLOAT_SIZE], figures[FLOAT_LATENCY]
    else:
        figures[SIZE] = size_mb(small)
        figures[LATENCY] = latency_ms(small, example, *timing)
    return figures


def validation_metrics(module: pl.LightningModule, datamodule: pl.LightningDataModule,
                       trainer_cfg: DictConfig) -> dict[str, float]:
    """Every metric ``module`` logs in one validation pass over ``datamodule``, on the CPU."""
    quiet_lightning()
    _one_process(module)
    trainer = build_trainer(trainer_cfg, logger=False, accelerator="cpu", devices=1,
                            num_nodes=1, strategy="auto", precision="32-true",
                            enable_checkpointing=False, callbacks=[])
    trainer.validate(module, datamodule=datamodule, verbose=False)
    return {name: as_computed(float(value)) for name, value in trainer.callback_metrics.items()}


def size_mb(module: torch.nn.Module) -> float:
    """The module's state dict as ``torch.save`` writes it, in MB (10^6 bytes); shared
    tensors are written once, int8 weights take a byte each."""
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return round(buffer.tell() / 1e6, 6)


def latency_ms(module: torch.nn.Module, example: tuple[torch.Tensor, ...], runs: int,
               warmup: int, threads: int) -> float:
    """The median time of ``runs`` forward passes of ``example`` after ``warmup`` untimed
    ones, on ``threads`` torch threads (the slot's own count is restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                module(*example)
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                module(*example)
                times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    return round(statistics.median(times) * 1e3, 6)


def _one_process(module: torch.nn.Module) -> None:
    """Keep a module's torchmetrics metrics to this process. torchmetrics syncs a metric
    across processes whenever torch.distributed is initialised, and after a DDP trial
    rank 0 validates its compressed copy alone, the other ranks gone: the sync failed
    the trial ("Connection closed by peer"). The copy is this validation's own."""
    for metric in module.modules():
        if type(metric).__module__.startswith("torchmetrics") and hasattr(
                metric, "sync_on_compute"):
            metric.sync_on_compute = metric._to_sync = metric.dist_sync_on_step = False
