"""The ``compress`` group: each complete trial's model compressed, validated and measured.

``compress.method`` is ``none`` (the default: nothing is measured), ``int8``, ``prune`` or
``qat``, or is searched (``search.compress.method``), as ``compress.amount`` may be. The
settings are checked here, before anything is written: a known method, an amount in
(0, 1), a QAT start epoch below ``trainer.max_epochs``, timing settings that time
something, and objectives that name what is measured (``compressed/<metric>``,
``model/size_mb``...: tuner.core.measures) only when something is. Whether the model has a
layer the method compresses, and whether the compressed model exports, is known only
once it is built: the preflight checks that (tuner.trial.preflight).
"""

from __future__ import annotations

from dataclasses import dataclass

from optuna.distributions import CategoricalDistribution, FloatDistribution

from tuner.config.compose import Composed
from tuner.config.space import SearchSpace
from tuner.core.errors import Problem
from tuner.core.measures import (
    FLOAT_LATENCY,
    FLOAT_SIZE,
    MODEL_MEASURES,
    MODEL_PREFIX,
    is_measured,
)

METHODS = ("none", "int8", "prune", "qat")
FLOAT_MEASURES = (FLOAT_SIZE, FLOAT_LATENCY)
METHOD_KEY, AMOUNT_KEY = "compress.method", "compress.amount"
START_KEY = "compress.qat_start_epoch"
SEARCHABLE = (METHOD_KEY, AMOUNT_KEY, "compress.structured", START_KEY)


@dataclass(frozen=True)
class Compression:
    """What a sweep's trials may be compressed with, checked."""

    methods: tuple[str, ...]  # one, or the choices of a searched compress.method

    @property
    def searched(self) -> bool:
        return len(self.methods) > 1


def compression_of(composed: Composed, space: SearchSpace | None, metrics: tuple[str, ...],
                   problems: list[Problem]) -> Compression | None:
    """The compression the config asks for (None: ``compress=none``, nothing measured),
    with every problem of its settings and of measured objectives added to ``problems``."""
    cfg = composed.cfg
    settings = cfg.get("compress") or {}
    params = {} if space is None else {p.path: p for p in space.params}
    before = len(problems)
    methods = _methods(composed, settings.get("method"), params.get(METHOD_KEY), problems)
    if "prune" in methods:
        _amount(composed, settings.get("amount"), params.get(AMOUNT_KEY), problems)
    if "qat" in methods:
        _qat_start(composed, settings.get("qat_start_epoch"), params.get(START_KEY), problems)
    for path in params:
        _check(problems, composed, f"search.{path}",
               not path.startswith("compress.") or path in SEARCHABLE,
               "is not searched: it sets how models are measured, which every trial of a "
               "study must share", f"search {', '.join(SEARCHABLE)} only",
               locate=f"search.{path}")
    for key, least in (("latency_runs", 1), ("latency_warmup", 0), ("latency_threads", 1)):
        value = settings.get(key)
        _check(problems, composed, f"compress.{key}", isinstance(value, int) and value >= least,
               f"must be an integer of at least {least}, got {value}",
               f"e.g. compress.{key}={max(least, 1)}")
    compressing = any(m != "none" for m in methods)
    # The float model's own size or latency needs no compression to be measured.
    float_only = not compressing and any(m in FLOAT_MEASURES for m in metrics)
    _objectives(composed, metrics, compressing, problems)
    if len(problems) > before or not (compressing or float_only):
        return None
    return Compression(methods)


def _methods(composed: Composed, method, searched, problems: list[Problem]) -> tuple[str, ...]:
    if searched is not None:
        d = searched.distribution
        choices = tuple(d.choices) if isinstance(d, CategoricalDistribution) else ()
        unknown = [c for c in choices if c not in METHODS]
        if not choices or unknown:
            problems.append(Problem(composed.locate(f"search.{METHOD_KEY}"),
                                    f"search.{METHOD_KEY}",
                                    f"{unknown[0]!r} is not a compression method" if unknown
                                    else "must be a categorical of methods",
                                    f"choose among {', '.join(METHODS)}: "
                                    "{type: categorical, choices: [none, int8, prune]}"))
            return ()
        return choices
    if method not in METHODS:
        problems.append(Problem(composed.locate(METHOD_KEY), METHOD_KEY,
                                f"unknown compression method {method!r}",
                                f"use one of {', '.join(METHODS)}: e.g. compress=int8"))
        return ()
    return (method,)


def _amount(composed: Composed, amount, searched, problems: list[Problem]) -> None:
    if searched is not None:
        values = searched.candidates()  # a range's bounds, or a categorical's choices
        ok = (isinstance(searched.distribution, FloatDistribution | CategoricalDistribution)
              and all(_share(v) for v in values))
        _check(problems, composed, f"search.{AMOUNT_KEY}", ok,
               f"must stay inside (0, 1), the share of weights set to zero; it reaches "
               f"{values}", "e.g. {type: float, low: 0.2, high: 0.8}",
               locate=f"search.{AMOUNT_KEY}")
        return
    _check(problems, composed, AMOUNT_KEY, _share(amount),
           f"must be in (0, 1), the share of each layer's weights set to zero; got {amount}",
           "e.g. compress.amount=0.5")


def _qat_start(composed: Composed, start, searched, problems: list[Problem]) -> None:
    epochs = composed.cfg.trainer.max_epochs
    if searched is not None:
        values = searched.candidates()
        _check(problems, composed, f"search.{START_KEY}",
               all(isinstance(v, int) and 0 <= v < epochs for v in values),
               f"reaches {values}, but a trial trains trainer.max_epochs={epochs} epochs: "
               "quantization-aware training would never start in some",
               f"keep it between 0 and {epochs - 1}", locate=f"search.{START_KEY}")
        return
    _check(problems, composed, START_KEY, isinstance(start, int) and 0 <= start < epochs,
           f"is {start}, but a trial trains trainer.max_epochs={epochs} epochs: "
           "quantization-aware training would never start",
           f"set compress.qat_start_epoch between 0 and {epochs - 1}")


def _share(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1


def _objectives(composed: Composed, metrics: tuple[str, ...], compressing: bool,
                problems: list[Problem]) -> None:
    """A measured objective is one tuner takes; beside the float model's own size and
    latency (measured whenever asked), it needs a compressed model."""
    for metric in metrics:
        if not isinstance(metric, str) or not is_measured(metric) or metric in FLOAT_MEASURES:
            continue
        if metric.startswith(MODEL_PREFIX) and metric not in MODEL_MEASURES:
            problems.append(Problem(composed.locate("metric"), "metric",
                                    f"'{metric}' is not a measure tuner takes",
                                    f"use one of {', '.join(MODEL_MEASURES)}"))
        elif not compressing:
            problems.append(Problem(
                composed.locate("metric"), "metric",
                f"'{metric}' is measured only when trials are compressed, and "
                "compress.method is none",
                "compress the trials' models (compress=int8, prune or qat), name a "
                f"metric the module logs, or the float model's own ({', '.join(FLOAT_MEASURES)})"))


def _check(problems: list[Problem], composed: Composed, key: str, ok: bool, message: str,
           fix: str, locate: str | None = None) -> None:
    if not ok:
        problems.append(Problem(composed.locate(locate or key), key, message, fix))
