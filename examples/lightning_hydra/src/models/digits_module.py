"""A LightningModule written as lightning-hydra-template writes one, knowing nothing of tuner.

The network, the optimizer and the scheduler come from the config (the optimizer and the
scheduler as ``_partial_`` callables); metrics are named ``train/loss``, ``val/loss``,
``val/acc``; a confusion matrix is logged as a figure through ``self.logger.experiment``,
as with Lightning's MLFlowLogger; the run's params get the network's size through
``self.logger.log_hyperparams``.
"""

import matplotlib

matplotlib.use("Agg")  # no display in a slot

import matplotlib.pyplot as plt
import torch
from lightning import LightningModule
from torch import nn


class DigitsLitModule(LightningModule):
    def __init__(self, net: nn.Module, optimizer, scheduler=None):
        super().__init__()
        self.save_hyperparameters(logger=False, ignore=["net"])
        self.net = net
        self.criterion = nn.CrossEntropyLoss()
        self.val_predictions: list[torch.Tensor] = []
        self.val_targets: list[torch.Tensor] = []

    def forward(self, x):
        return self.net(x)

    def on_fit_start(self):
        if self.logger is not None:
            size = sum(p.numel() for p in self.parameters())
            self.logger.log_hyperparams({"net/parameters": size})

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.criterion(self(x), y)
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val/loss", self.criterion(logits, y), on_epoch=True)
        predictions = logits.argmax(dim=1)
        self.log("val/acc", (predictions == y).float().mean(), on_epoch=True)
        self.val_predictions.append(predictions)
        self.val_targets.append(y)

    def on_validation_epoch_end(self):
        predictions, targets = torch.cat(self.val_predictions), torch.cat(self.val_targets)
        self.val_predictions.clear()
        self.val_targets.clear()
        if self.logger is None or self.trainer.sanity_checking:
            return
        matrix = torch.zeros(10, 10)
        for target, prediction in zip(targets.tolist(), predictions.tolist(), strict=True):
            matrix[target, prediction] += 1
        figure, axes = plt.subplots(figsize=(4, 4))
        axes.imshow(matrix, cmap="Blues")
        axes.set_xlabel("predicted")
        axes.set_ylabel("true")
        self.logger.experiment.log_figure(self.logger.run_id, figure, "confusion_matrix.png")
        plt.close(figure)

    def configure_optimizers(self):
        optimizer = self.hparams.optimizer(params=self.trainer.model.parameters())
        if self.hparams.scheduler is None:
            return {"optimizer": optimizer}
        scheduler = self.hparams.scheduler(optimizer=optimizer)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss",
                                 "interval": "epoch", "frequency": 1}}
