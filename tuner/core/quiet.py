"""Keep the libraries' console chatter out of a sweep's output.

A sweep builds hundreds of Trainers and opens many stores: Lightning prints device
banners and tips once per Trainer, MLflow and alembic log every schema migration, and
Optuna logs every trial at INFO. tuner reports progress itself (tuner.app.progress).
Lightning and MLflow are quieted through the standard logging module, which costs no
import of theirs.
"""

from __future__ import annotations

import logging
import warnings


def quiet_optuna() -> None:
    # Through Optuna's own call: importing optuna (re)sets its logger's level, so a
    # level set on the logger before that import would not hold.
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def quiet_mlflow() -> None:
    """MLflow and alembic log every schema migration at INFO; keep the console for us.
    MLflow's SQL store also logs each failed write with its traceback (a full disk, a
    locked file): tuner says what it does about it in one line (tuner.launch.run_writer)."""
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def quiet_lightning() -> None:
    """Lightning prints device banners and tips once per Trainer; a sweep builds hundreds.

    Both package names are quieted: mlflow.pytorch imports the standalone
    ``pytorch_lightning`` package, which renames Lightning's shared rank-zero logger.
    """
    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning",
                 "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*is deprecated")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    # On an HPC login node (srun on the PATH) Lightning warns once per Trainer that srun
    # "is not used", in the middle of the progress line. A slot is started by tuner, not
    # srun, by design; a SLURM job runs `tuner worker`, whose trials are local to it.
    warnings.filterwarnings("ignore", message=r"The `srun` command is available")
    # Per-epoch logging is tuner's design (tuner.models.base.EpochMeans), not a mistake.
    warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")


def quiet_torchao() -> None:
    """torchao logs, at its import, each of its GPU-only kernels that a CPU build of torch
    cannot load, and torch warns once about an enum torchao registers the old way: noise
    for a CPU user, and nothing a user of tuner can act on. Call it before the import."""
    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)
