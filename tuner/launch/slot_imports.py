"""What the slots' fork server imports once, so that each slot it forks has it already.

Imports only: nothing here may initialise CUDA, start OpenMP's threads or train, since
every slot is forked from this state and then pins its own GPUs and threads
(tuner.launch.slot). torch answers ``cuda.is_available()`` by NVML, without initialising
CUDA, when ``PYTORCH_NVML_BASED_CUDA_CHECK`` is set; the fork server sets it before
torch loads.

The fork server ends when its driver does. Freeing torch's and Lightning's modules one
by one would take it a second or more, while it still holds the driver's stdout and
stderr (a caller reading them to the end waits that long), so it ends at once instead
(the slots it forked have exit handlers of their own: tuner.launch.slot).
"""

import atexit
import os

os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")

import lightning.pytorch  # noqa: F401  (torch comes with it)
import optuna  # noqa: F401

import tuner.launch.ddp
import tuner.launch.slot
import tuner.trial.train  # noqa: F401

_SERVER = os.getpid()


def _end_at_once() -> None:
    if os.getpid() == _SERVER:  # the fork server itself; a slot forked from it goes on
        os._exit(0)


atexit.register(_end_at_once)
