"""How a data module's raw values become what its model trains on, for a served model.

A data module scales its data before the model sees it (digits' pixels divided by 16,
diabetes' features and target standardised with the training rows' statistics). A
model served on its own would then take scaled values and answer in scaled units, and a
person sending the raw pixels or measurements they hold would get wrong answers without
an error. A data module that scales says how, with ``serving_transforms()``: the
transform of the raw input into the model's input, and of the model's output into raw
units (either may be None). The exported champion includes both
(tuner.trial.served), so the model server takes and answers raw values.
"""

from __future__ import annotations

import torch


class Affine(torch.nn.Module):
    """``x * scale + shift`` (per feature when they are vectors); exported with the model."""

    def __init__(self, scale, shift=0.0):
        super().__init__()
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))
        self.register_buffer("shift", torch.as_tensor(shift, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.shift) / self.scale
