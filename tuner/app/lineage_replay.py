"""``tuner replay``: a PBT winner's lineage trained again, generation 0 first.

Each segment of the lineage (tuner.study.population.lineage) trains again in this
process, with what the study recorded of it: its config (the values it trained with),
its seed, its epochs, and the thread count its slot had; from generation 1 on, from the
checkpoint the replay itself saved at the end of the segment before, through the same
callbacks as in the sweep (tuner.trial.segment). So the replay depends on no file of
the sweep's (its checkpoints are deleted as the population moves on), and on CPU it
reaches the very values the sweep recorded: the state a child starts from, random
generators included, is the one its parent ended with.

It writes nothing to the study or to MLflow: it says, segment by segment, the value it
reached beside the one the sweep recorded.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf
from optuna.trial import FrozenTrial, TrialState

from tuner.app.lookup import load_study
from tuner.config.compose import Composed
from tuner.core import attrs
from tuner.core.errors import ConfigError, Problem
from tuner.study.population import lineage, member_of
from tuner.study.trial_attrs import trial_attr
from tuner.study.trials import best_trial, metric_names


@dataclass(frozen=True)
class Replayed:
    trial: FrozenTrial
    recorded: float
    replayed: float


def replay_lineage(composed: Composed, number: int | None,
                   say: Callable[[str], None]) -> list[Replayed]:
    """Train trial ``number``'s lineage again (default: the study's best); one
    :class:`Replayed` per segment, each said as it ends."""
    from tuner.trial.build import prepare_process

    study = load_study(composed)
    trials = study.get_trials(deepcopy=False)
    target = _target(trials, study, number)
    chain = lineage(trials, target.number)
    threads = int(target.user_attrs.get(attrs.PBT_THREADS_ATTR, 1))
    prepare_process(threads)
    metric = metric_names(study)[0]
    say(f"replaying trial {target.number}'s lineage: {len(chain)} segment(s) from generation "
        f"0, on {threads} thread(s) as its slot had")
    if any(int(t.user_attrs.get(attrs.WORLD_SIZE_ATTR, 1)) > 1 for t in chain):
        say("  (it trained with DDP on several processes; the replay trains on one, so its "
            "values will differ)")
    done: list[Replayed] = []
    with tempfile.TemporaryDirectory(prefix="tuner-replay-") as folder:
        start = None
        for segment in chain:
            value, start = _train(segment, metric, Path(folder), start)
            done.append(Replayed(segment, segment.values[0], value))
            first, last = segment.user_attrs[attrs.PBT_EPOCHS_ATTR]
            same = "the same" if value == segment.values[0] else "differs"
            say(f"  epochs {first + 1}-{last}: trial {segment.number}  {metric}={value:.6g} "
                f"(the sweep: {segment.values[0]:.6g}, {same})")
    return done


def _target(trials: list[FrozenTrial], study, number: int | None) -> FrozenTrial:
    target = best_trial(study, trials) if number is None else (
        trials[number] if 0 <= number < len(trials) else None)
    if target is None:
        raise ConfigError(Problem("command line", "--trial",
                                  f"the study has no trial {number}" if number is not None
                                  else "the study has no complete trial to replay",
                                  f"trials are numbered 0 to {len(trials) - 1}"))
    if member_of(target) is None or target.state != TrialState.COMPLETE:
        raise ConfigError(Problem(
            "command line", "--trial",
            f"trial {target.number} is not a complete segment of a population "
            "(strategy=pbt)", "name a complete trial of a PBT study: tuner replay STUDY "
                              "--trial N (default: its best)"))
    return target


def _train(segment: FrozenTrial, metric: str, folder: Path, start: Path | None
           ) -> tuple[float, Path]:
    """One segment trained from ``start`` (None in generation 0); its value and the
    checkpoint it saved."""
    from tuner.trial.fit import FitInputs, fit
    from tuner.trial.order import SegmentOrder
    from tuner.trial.segment import segment_inputs

    first, last = segment.user_attrs[attrs.PBT_EPOCHS_ATTR]
    order = SegmentOrder(first, last, folder / f"{segment.number}.ckpt", start)
    end, resume_from, more = segment_inputs(order)
    cfg = OmegaConf.create(trial_attr(segment, attrs.CONFIG_ATTR))
    fitted = fit(FitInputs(
        cfg, int(trial_attr(segment, attrs.SEED_ATTR)), (metric,), False,
        folder / str(segment.number), checkpoint=end, resume_from=resume_from,
        callbacks=more))
    return fitted.outcome.values[0], order.end_checkpoint
