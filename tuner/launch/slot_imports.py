"""What the slots' fork server imports once, so that each slot it forks has it already.

Imports only: nothing here may initialise CUDA, start OpenMP's threads or train, since
every slot is forked from this state and then pins its own GPUs and threads
(tuner.launch.slot). torch answers ``cuda.is_available()`` by NVML, without initialising
CUDA, when ``PYTORCH_NVML_BASED_CUDA_CHECK`` is set; the fork server sets it before
torch loads.
"""

import os

os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")

import lightning.pytorch  # noqa: F401  (torch comes with it)
import optuna  # noqa: F401

import tuner.launch.ddp
import tuner.launch.slot
import tuner.trial.train  # noqa: F401
