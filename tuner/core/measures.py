"""Names of what tuner measures on a trained model, when the sweep compresses it.

After a trial completes under ``compress`` (conf/compress/), its model is compressed,
validated again and measured (tuner.trial.measure). Its validation metrics come back as
``compressed/<metric>``, its size and latency as ``model/...``, each beside the float
model's. Any of them may be an objective (``metric=[compressed/val_acc,model/latency_ms]``);
a trial's epochs still report the float metric the compressed one is named after, so a
pruner reads the float training curve.
"""

COMPRESSED_PREFIX = "compressed/"  # compressed/val_acc: val_acc of the compressed model
MODEL_PREFIX = "model/"
SIZE = "model/size_mb"  # the compressed model's state dict as torch.save writes it, in MB
LATENCY = "model/latency_ms"  # the compressed model's median forward time, one example
FLOAT_SIZE = "model/float_size_mb"  # the same of the model as trained
FLOAT_LATENCY = "model/float_latency_ms"
MODEL_MEASURES = (SIZE, LATENCY, FLOAT_SIZE, FLOAT_LATENCY)


def is_measured(metric: str) -> bool:
    """``metric`` is one tuner measures after training, not one the module logs."""
    return metric.startswith((COMPRESSED_PREFIX, MODEL_PREFIX))


def float_metric(metric: str) -> str | None:
    """The metric a module logs that ``metric`` follows while it trains: ``val_acc`` for
    ``compressed/val_acc`` or ``val_acc``; None for a size or latency (no training curve)."""
    if metric.startswith(COMPRESSED_PREFIX):
        return metric[len(COMPRESSED_PREFIX):]
    if metric.startswith(MODEL_PREFIX):
        return None
    return metric


def compressed(metric: str) -> str:
    return f"{COMPRESSED_PREFIX}{metric}"


def logged_metrics(metrics) -> list[str]:
    """The metrics a module logs that ``metrics`` (a study's objectives) follow, each once,
    in order: ``[val_acc]`` for ``[compressed/val_acc, model/latency_ms]``."""
    return list(dict.fromkeys(m for m in map(float_metric, metrics) if m is not None))
