"""What a sweep shows while it runs.

On a terminal: one live bar for the sweep (done/total, best so far, pruned and failed
counts, ETA). Otherwise (CI logs, files, pipes): one plain line per finished trial.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TextIO

from optuna.trial import TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from tuner.core.masking import mask
from tuner.core.results import TrialResult


@dataclass
class Tally:
    """Counts of the study so far (all invocations), for display."""

    done: int  # COMPLETE + PRUNED
    total: int  # n_trials
    pruned: int = 0
    failed: int = 0
    best: str = "-"  # formatted best value(s)


def format_values(metrics: tuple[str, ...], values: list[float] | None) -> str:
    if not values:
        return "-"
    return " ".join(f"{m}={v:.4g}" for m, v in zip(metrics, values, strict=True))


class PlainReporter:
    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout

    def print(self, text: str) -> None:
        print(mask(text), file=self.stream, flush=True)

    def start(self, study_name: str, tally: Tally) -> None:
        pass

    def trial_done(self, result: TrialResult, metrics: tuple[str, ...], tally: Tally) -> None:
        if result.state == TrialState.COMPLETE:
            outcome = format_values(metrics, result.values)
        elif result.state == TrialState.PRUNED:
            outcome = f"at epoch {result.pruned_at}"
        else:
            outcome = result.reason or ""
        self.print(f"trial {result.number} {result.state.name} {outcome} | best {tally.best} | "
                   f"{tally.done}/{tally.total} done, {tally.pruned} pruned, {tally.failed} "
                   f"failed | {result.seconds:.1f}s")

    def stop(self) -> None:
        pass


class RichReporter(PlainReporter):
    """A live progress bar; failures are printed above it as they happen."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console()
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("best [green]{task.fields[best]}"),
            TextColumn("pruned {task.fields[pruned]} failed {task.fields[failed]}"),
            TimeRemainingColumn(), console=self.console, transient=False)
        self.task = None

    def print(self, text: str) -> None:
        self.console.print(mask(text), highlight=False, markup=False)

    def start(self, study_name: str, tally: Tally) -> None:
        self.progress.start()
        self.task = self.progress.add_task(study_name, total=tally.total, completed=tally.done,
                                           best=tally.best, pruned=tally.pruned,
                                           failed=tally.failed)

    def trial_done(self, result: TrialResult, metrics: tuple[str, ...], tally: Tally) -> None:
        if result.state == TrialState.FAIL:
            self.print(f"trial {result.number} FAIL {result.reason}")
        self.progress.update(self.task, completed=tally.done, best=tally.best,
                             pruned=tally.pruned, failed=tally.failed)

    def stop(self) -> None:
        self.progress.stop()


def make_reporter(stream: TextIO | None = None) -> PlainReporter:
    stream = stream or sys.stdout
    if stream.isatty():
        return RichReporter(Console(file=stream))
    return PlainReporter(stream)
