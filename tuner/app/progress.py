"""What a sweep shows while it runs.

On a terminal: one live bar for the sweep (done/total, time left, best so far, pruned and
failed counts when there are any). Otherwise (CI logs, files, pipes): one plain line per
finished trial.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TextIO

from optuna.trial import TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Column

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

    def phase(self, text: str) -> None:
        """What the sweep does after its last trial (a few seconds each): said, so that
        the output never sits still without a word."""
        self.print(f"{text}...")

    def stop(self) -> None:
        pass


NAME_WIDTH, BAR_WIDTH = 24, 12  # the study's name (cut beyond), the bar


class RichReporter(PlainReporter):
    """A live progress bar; failures are printed above it as they happen."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console()
        # The bar, the count and the time left come first and keep their width; the best
        # value(s) and counts last, cut with "…" when a narrow terminal (80 columns, two
        # metrics) has no room: rich would drop the bar and the count instead.
        self.progress = Progress(
            TextColumn("[bold]{task.description}", table_column=Column(
                max_width=NAME_WIDTH, no_wrap=True, overflow="ellipsis")),
            BarColumn(bar_width=BAR_WIDTH, table_column=Column(min_width=BAR_WIDTH)),
            MofNCompleteColumn(table_column=Column(min_width=5, no_wrap=True)),
            TimeRemainingColumn(table_column=Column(min_width=7, no_wrap=True)),
            TextColumn("{task.fields[status]}", markup=False,
                       table_column=Column(no_wrap=True)),
            console=self.console, transient=False)
        self.task = None
        self._status_text = ""  # the best value(s) and counts, which a phase replaces

    def print(self, text: str) -> None:
        self.console.print(mask(text), highlight=False, markup=False)

    def start(self, study_name: str, tally: Tally) -> None:
        self.progress.start()
        self._status_text = self._status(study_name, tally)
        self.task = self.progress.add_task(study_name, total=tally.total, completed=tally.done,
                                           status=self._status_text)

    def trial_done(self, result: TrialResult, metrics: tuple[str, ...], tally: Tally) -> None:
        if result.state == TrialState.FAIL:
            self.print(f"trial {result.number} FAIL {result.reason}")
        name = self.progress.tasks[0].description if self.progress.tasks else ""
        self._status_text = self._status(name, tally)
        self.progress.update(self.task, completed=tally.done, status=self._status_text)

    def phase(self, text: str) -> None:
        """In the bar's status, where the best value was: the bar stays at its count."""
        if self.task is not None:
            self.progress.update(self.task, status=f"{text}...")

    def _status(self, name: str, tally: Tally) -> str:
        """The best value(s) and the counts, cut with "…" to the room the line leaves
        after the name, the bar, the count and the time left (their widths are fixed)."""
        text = f"best {tally.best}{_counts(tally)}"
        fixed = min(len(name), NAME_WIDTH) + BAR_WIDTH + 2 * len(str(tally.total)) + 1 + 7 + 4
        room = max(12, self.console.width - fixed - 1)
        return text if len(text) <= room else text[:room - 1] + "…"

    def stop(self) -> None:
        """The bar stays on the screen as it ended: with the best value(s), not the last
        phase's words."""
        if self.task is not None:
            self.progress.update(self.task, status=self._status_text)
        self.progress.stop()


def _counts(tally: Tally) -> str:
    """" · 3 pruned, 1 failed", the parts that are not zero: short, for 80 columns."""
    parts = [f"{n} {what}" for n, what in ((tally.pruned, "pruned"), (tally.failed, "failed"))
             if n]
    return f" · {', '.join(parts)}" if parts else ""


def make_reporter(stream: TextIO | None = None) -> PlainReporter:
    stream = stream or sys.stdout
    if stream.isatty():
        return RichReporter(Console(file=stream))
    return PlainReporter(stream)
