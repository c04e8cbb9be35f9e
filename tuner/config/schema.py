"""Types and required keys of the sweep configuration.

The YAML files under ``conf/`` hold every value (with a comment on what it does);
these dataclasses only say what type each key has and that it must be present. Hydra
merges each YAML file onto its schema, so a misspelt key or a value of the wrong type
fails at compose time, before anything is written.

A user's own model or data config (``--config-dir``) needs no schema: it is checked
when the preflight instantiates it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


class Optimizer(StrEnum):
    sgd = "sgd"  # plain SGD, or SGD with momentum when momentum > 0
    adagrad = "adagrad"
    rmsprop = "rmsprop"
    adam = "adam"
    adamw = "adamw"


class LrSchedule(StrEnum):
    constant = "constant"
    cosine = "cosine"
    linear = "linear"
    exponential = "exponential"


class Activation(StrEnum):
    relu = "relu"
    gelu = "gelu"
    tanh = "tanh"


class GradientClipAlgorithm(StrEnum):
    norm = "norm"
    value = "value"


@dataclass
class OptimizerSchema:
    """Optimizer and learning-rate schedule, shared by every built-in model."""

    optimizer: Optimizer = MISSING
    lr: float = MISSING
    momentum: float = MISSING
    nesterov: bool = MISSING
    weight_decay: float = MISSING
    lr_schedule: LrSchedule = MISSING
    warmup_fraction: float = MISSING
    lr_final_factor: float = MISSING


@dataclass
class MLPSchema(OptimizerSchema):
    _target_: str = MISSING
    input_dim: int = MISSING
    num_classes: int = MISSING
    width: int = MISSING
    depth: int = MISSING
    dropout: float = MISSING
    activation: Activation = MISSING


@dataclass
class CNNSchema(OptimizerSchema):
    _target_: str = MISSING
    image_shape: list[int] = MISSING
    num_classes: int = MISSING
    channels: int = MISSING
    depth: int = MISSING
    kernel_size: int = MISSING
    hidden: int = MISSING
    dropout: float = MISSING


@dataclass
class LinearSchema(OptimizerSchema):
    _target_: str = MISSING
    input_dim: int = MISSING


@dataclass
class GPTSchema(OptimizerSchema):
    _target_: str = MISSING
    vocab_size: int = MISSING
    block_size: int = MISSING
    n_layer: int = MISSING
    n_head: int = MISSING
    n_embd: int = MISSING
    dropout: float = MISSING


@dataclass
class DigitsSchema:
    _target_: str = MISSING
    batch_size: int = MISSING
    val_fraction: float = MISSING
    split_seed: int = MISSING
    num_features: int = MISSING
    num_classes: int = MISSING
    image_shape: list[int] = MISSING


@dataclass
class MnistSchema:
    _target_: str = MISSING
    path: str = MISSING
    batch_size: int = MISSING
    val_fraction: float = MISSING
    split_seed: int = MISSING
    max_train_samples: int | None = MISSING
    num_features: int = MISSING
    num_classes: int = MISSING
    image_shape: list[int] = MISSING


@dataclass
class DiabetesSchema:
    _target_: str = MISSING
    batch_size: int = MISSING
    val_fraction: float = MISSING
    split_seed: int = MISSING
    num_features: int = MISSING


@dataclass
class CharCorpusSchema:
    _target_: str = MISSING
    path: str | None = MISSING
    block_size: int = MISSING
    batch_size: int = MISSING
    val_fraction: float = MISSING
    vocab_size: int = MISSING


@dataclass
class TrainerSchema:
    """The types of the Trainer settings tuner reads itself. ``trainer:`` takes any other
    ``lightning.Trainer`` argument too, so this is not the group's schema (that would
    refuse them): tuner.config.trainer_checks checks the keys against Lightning's own
    list and these types, at check time."""

    max_epochs: int = MISSING
    accelerator: str = MISSING
    devices: Any = MISSING
    num_nodes: int = MISSING
    strategy: str = MISSING
    precision: str = MISSING
    gradient_clip_val: float | None = MISSING
    gradient_clip_algorithm: GradientClipAlgorithm = MISSING
    accumulate_grad_batches: int = MISSING
    check_val_every_n_epoch: int = MISSING
    limit_train_batches: Any = MISSING
    limit_val_batches: Any = MISSING
    log_every_n_steps: int = MISSING
    deterministic: bool = MISSING
    enable_checkpointing: bool = MISSING


@dataclass
class TrackingSchema:
    tracking_uri: str = MISSING
    experiment: str | None = None  # the MLflow experiment; None: the study's name
    artifact_location: str | None = MISSING
    flush_interval: float = MISSING
    log_models: bool = MISSING
    register_champion: bool = MISSING
    report: bool = MISSING
    outbox_dir: str = MISSING


@dataclass
class CompressSchema:
    """What ``compress`` holds (tuner.config.compression checks the values)."""

    method: str = MISSING  # none | int8 | prune | qat
    amount: float = MISSING
    structured: bool = MISSING
    qat_start_epoch: int = MISSING
    latency_runs: int = MISSING
    latency_warmup: int = MISSING
    latency_threads: int = MISSING


@dataclass
class LauncherSchema:
    """What ``launcher`` holds (tuner.config.launcher checks the values); the SLURM keys
    have their defaults here, so that ``launcher=local`` needs only its kind."""

    kind: str = MISSING  # local | slurm
    nodes: int = 2
    nodes_per_trial: int = 1
    gpus_per_node: int = 0
    cpus_per_node: int | None = None
    mem: str | None = None
    time: int = 60
    partition: str | None = None
    account: str | None = None
    signal_s: int = 120
    requeue: bool = False
    shared_fs: bool = False
    sbatch: dict[str, Any] = field(default_factory=dict)
    setup: list[str] = field(default_factory=list)
    folder: str | None = None


@dataclass
class SweepSchema:
    model: Any = MISSING
    data: Any = MISSING
    trainer: dict[str, Any] = MISSING  # any lightning.Trainer argument (TrainerSchema)
    callbacks: dict[str, Any] = field(default_factory=dict)  # name -> a callback's config
    search: dict[str, Any] = MISSING
    sampler: Any = MISSING
    pruner: Any = MISSING
    strategy: Any = MISSING  # search | pbt (tuner.config.population)
    storage: Any = MISSING
    tracking: TrackingSchema = field(default_factory=TrackingSchema)
    compress: CompressSchema = field(default_factory=CompressSchema)
    launcher: LauncherSchema = field(default_factory=LauncherSchema)
    study_name: str | None = MISSING
    n_trials: int = MISSING
    timeout: float | None = MISSING
    metric: Any = MISSING
    direction: Any = MISSING
    seed: int = MISSING
    run_dir: str = MISSING
    max_failures: int = MISSING
    retry_failed: int = MISSING
    resume_checkpoint_s: float | None = MISSING
    slots: Any = MISSING  # an int, or "auto"
    devices_per_trial: int = MISSING
    slots_per_gpu: int = MISSING


# Schema names end in `_schema` so that they read as such in `defaults:` lists.
_SCHEMAS: dict[tuple[str | None, str], type] = {
    (None, "sweep_schema"): SweepSchema,
    ("model", "mlp_schema"): MLPSchema,
    ("model", "cnn_schema"): CNNSchema,
    ("model", "linear_schema"): LinearSchema,
    ("model", "gpt_schema"): GPTSchema,
    ("data", "digits_schema"): DigitsSchema,
    ("data", "mnist_schema"): MnistSchema,
    ("data", "diabetes_schema"): DiabetesSchema,
    ("data", "char_corpus_schema"): CharCorpusSchema,
    ("tracking", "tracking_schema"): TrackingSchema,
    ("compress", "compress_schema"): CompressSchema,
    ("launcher", "launcher_schema"): LauncherSchema,
}

SCHEMA_NAMES = frozenset(name for _, name in _SCHEMAS)


def register_schemas() -> None:
    """Put the schemas in Hydra's ConfigStore (idempotent)."""
    store = ConfigStore.instance()
    for (group, name), node in _SCHEMAS.items():
        store.store(group=group, name=name, node=node)
