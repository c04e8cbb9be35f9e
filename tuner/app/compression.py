"""A compressed trial's figures as a person reads them: the summary's lines, the
leaderboard's columns (tuner.trial.measure measured them; the trial holds them)."""

from __future__ import annotations

from typing import Any

from optuna.trial import FrozenTrial

from tuner.core import attrs
from tuner.core.measures import (
    COMPRESSED_PREFIX,
    FLOAT_LATENCY,
    FLOAT_SIZE,
    LATENCY,
    MODEL_MEASURES,
    SIZE,
    compressed,
    float_metric,
    logged_metrics,
)


def measured_of(trial: FrozenTrial) -> dict[str, float]:
    return dict(trial.user_attrs.get(attrs.MEASURED_ATTR) or {})


def served_value(trial: FrozenTrial, metric: str) -> tuple[float, str]:
    """The trial's value of the study's first ``metric`` as its served model has it, and
    its name: under compression the model served is the compressed one, so a float
    objective (``val_acc``) is read from its compressed figure (``compressed/val_acc``)."""
    measured = measured_of(trial)
    if (trial.user_attrs.get(attrs.COMPRESSED_WITH_ATTR, "none") != "none"
            and float_metric(metric) == metric and compressed(metric) in measured):
        return measured[compressed(metric)], compressed(metric)
    return trial.values[0], metric


def leaderboard_columns(trial: FrozenTrial, metrics: tuple[str, ...]) -> dict[str, Any]:
    """The method, the compressed objectives' float metrics and the four model measures
    (not the compressed copy of every metric the module logs)."""
    measured = measured_of(trial)
    if not measured:
        return {}
    named = {compressed(m) for m in logged_metrics(metrics)}
    columns: dict[str, Any] = {"compressed_with": trial.user_attrs.get(attrs.COMPRESSED_WITH_ATTR)}
    floats = {m[len(COMPRESSED_PREFIX):] for m in named}
    columns.update((k, v) for k, v in measured.items()
                   if (k in named or k in floats or k in MODEL_MEASURES) and k not in metrics)
    return columns


def compression_record(trial: FrozenTrial, metrics: tuple[str, ...]) -> dict[str, Any] | None:
    """What ``tuner best`` says of a measured trial: the method, its figures, the line."""
    measured = measured_of(trial)
    if not measured:
        return None
    return {"method": trial.user_attrs.get(attrs.COMPRESSED_WITH_ATTR), "figures": measured,
            "said": compression_lines(trial, metrics)[0]}


def compression_lines(trial: FrozenTrial, metrics: tuple[str, ...]) -> list[str]:
    """``compressed (int8): val_acc 0.9583 (float 0.9611), 0.094 MB (float 0.343: 3.65x
    smaller), 0.105 ms (float 0.029: 3.62x slower)``; none for a trial not measured."""
    measured = measured_of(trial)
    if not measured:
        return []
    method = trial.user_attrs.get(attrs.COMPRESSED_WITH_ATTR, "?")
    if method == "none":  # one of a searched method's choices: the float model as it is
        return [f"not compressed (compress.method=none): {_figures(measured, metrics)}"]
    # A QAT model was validated fake-quantized as it trained; its size and speed are float.
    trained = "as trained" if method == "qat" else "float"
    parts = []
    for metric in logged_metrics(metrics):
        small, full = measured.get(compressed(metric)), measured.get(metric)
        if small is not None:
            parts.append(f"{metric} {small:.4g}" + (f" ({trained} {full:.4g})"
                                                    if full is not None else ""))
    parts.append(_versus(measured, SIZE, FLOAT_SIZE, "MB", "smaller", "larger"))
    parts.append(_versus(measured, LATENCY, FLOAT_LATENCY, "ms", "faster", "slower"))
    return [f"compressed ({method}): " + ", ".join(p for p in parts if p)]


def _versus(measured: dict[str, float], key: str, float_key: str, unit: str, less: str,
            more: str) -> str:
    small, full = measured.get(key), measured.get(float_key)
    if small is None or full is None or small <= 0:
        return ""
    ratio = full / small
    if abs(ratio - 1) < 0.01:
        said = "the same"
    else:
        said = f"{ratio:.2f}x {less}" if ratio > 1 else f"{1 / ratio:.2f}x {more}"
    return f"{small:.3g} {unit} (float {full:.3g}: {said})"


def _figures(measured: dict[str, float], metrics: tuple[str, ...]) -> str:
    """A float model's own figures: its metrics, size and latency."""
    parts = [f"{m} {measured[m]:.4g}" for m in logged_metrics(metrics) if m in measured]
    parts.append(f"{measured[FLOAT_SIZE]:.3g} MB, {measured[FLOAT_LATENCY]:.3g} ms")
    return ", ".join(parts)
