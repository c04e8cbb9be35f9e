"""What every built-in model shares: optimizer and schedule settings, a parameter count.

A user's own LightningModule does not need this base class; anything Lightning can fit
works, as long as it logs the metric the sweep optimises.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from tuner.core.upstream import FastHookName
from tuner.models.optim import OptimSettings, build_optimizer, build_scheduler


class EpochMeans:
    """Batch-size-weighted means of per-batch metrics, logged once per epoch.

    Lightning's ``self.log`` does a lot of bookkeeping per call; in a profile of the
    digits MLP on CPU it cost more than the training step itself. Summing on the device
    and logging once per epoch keeps that cost out of the step.
    """

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, name: str, batch_mean: torch.Tensor, n: int) -> None:
        value = batch_mean.detach() * n
        self.sums[name] = self.sums[name] + value if name in self.sums else value
        self.counts[name] = self.counts.get(name, 0) + n

    def mean(self, name: str) -> torch.Tensor | None:
        """The running mean of ``name`` so far this epoch, if anything was added."""
        return self.sums[name] / self.counts[name] if name in self.sums else None

    def pop(self) -> dict[str, torch.Tensor]:
        means = {k: v / self.counts[k] for k, v in self.sums.items()}
        self.sums, self.counts = {}, {}
        return means


class TunableModule(FastHookName, pl.LightningModule):
    def __init__(self, optimizer="adam", lr=1e-3, momentum=0.0, nesterov=False,
                 weight_decay=0.0, lr_schedule="constant", warmup_fraction=0.0,
                 lr_final_factor=0.01):
        super().__init__()
        self.optim_settings = OptimSettings(optimizer, lr, momentum, nesterov, weight_decay,
                                            lr_schedule, warmup_fraction, lr_final_factor)
        self.train_means, self.val_means = EpochMeans(), EpochMeans()

    @property
    def param_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def configure_optimizers(self):
        optimizer = build_optimizer(self.named_parameters(), self.optim_settings)
        settings = self.optim_settings
        if settings.lr_schedule == "constant" and not settings.warmup_fraction:
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = build_scheduler(optimizer, total, self.optim_settings)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    @property
    def _distributed(self) -> bool:
        return self.trainer.world_size > 1

    def on_train_epoch_end(self) -> None:
        # Under DDP each rank trained on its own shard: average the ranks' means.
        self.log_dict(self.train_means.pop(), sync_dist=self._distributed)

    def on_validation_epoch_end(self) -> None:
        # Every rank validates on all rows (tuner.data.in_memory), so the ranks agree;
        # sync_dist keeps that true for data modules that do shard validation.
        self.log_dict(self.val_means.pop(), sync_dist=self._distributed)
        # A metric so that a multi-objective study can minimise it (read every epoch);
        # it does not change while training, so the run records it once (on_fit_start).
        self.log("param_count", float(self.param_count), sync_dist=self._distributed,
                 logger=False)

    def on_fit_start(self) -> None:
        if self.logger is not None:
            self.logger.log_metrics({"param_count": float(self.param_count)}, step=0)


class SupervisedModule(TunableModule):
    """Batches of (input, target): subclasses give ``forward`` and ``loss``.

    Logs ``train_loss`` and ``val_loss`` per epoch, plus whatever ``val_metrics`` adds.
    """

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def val_metrics(self, output: torch.Tensor, target: torch.Tensor
                    ) -> dict[str, torch.Tensor]:
        return {"val_loss": self.loss(output, target)}

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.loss(self(x), y)
        self.train_means.add("train_loss", loss, len(y))
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        for name, value in self.val_metrics(self(x), y).items():
            self.val_means.add(name, value, len(y))


class ClassifierModule(SupervisedModule):
    """Cross-entropy over class logits; also logs val_acc."""

    def loss(self, output, target):
        return F.cross_entropy(output, target)

    def val_metrics(self, output, target):
        return {"val_loss": self.loss(output, target),
                "val_acc": (output.argmax(dim=-1) == target).float().mean()}

    def predict_step(self, batch, batch_idx):
        return self(batch[0]).softmax(dim=-1)


ACTIVATIONS = {"relu": torch.nn.ReLU, "gelu": torch.nn.GELU, "tanh": torch.nn.Tanh}
