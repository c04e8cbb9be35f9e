"""What a user sees while a sweep runs: a live bar on a terminal, one line per trial elsewhere."""

from __future__ import annotations

import io
import re

from optuna.trial import TrialState
from rich.console import Console

from tuner.app.progress import PlainReporter, RichReporter, Tally, make_reporter
from tuner.core.results import TrialResult

METRICS = ("val_acc",)


def test_plain_lines_say_state_value_best_and_counts():
    out = io.StringIO()
    reporter = PlainReporter(out)
    tally = Tally(done=3, total=10, pruned=1, failed=1, best="val_acc=0.95")
    reporter.trial_done(TrialResult(2, TrialState.COMPLETE, values=[0.9312], seconds=1.25),
                        METRICS, tally)
    reporter.trial_done(TrialResult(3, TrialState.PRUNED, pruned_at=2), METRICS, tally)
    reporter.trial_done(TrialResult(4, TrialState.FAIL, reason="ValueError: boom"), METRICS,
                        tally)
    lines = out.getvalue().splitlines()
    assert lines[0] == ("trial 2 COMPLETE val_acc=0.9312 | best val_acc=0.95 | 3/10 done, "
                        "1 pruned, 1 failed | 1.2s")
    assert lines[1].startswith("trial 3 PRUNED at epoch 2 |")
    assert lines[2].startswith("trial 4 FAIL ValueError: boom |")


def test_terminal_gets_a_live_bar_with_best_counts_and_eta():
    out = io.StringIO()
    reporter = RichReporter(Console(file=out, force_terminal=True, width=150))
    reporter.start("digits-mlp", Tally(done=2, total=5))
    reporter.trial_done(TrialResult(2, TrialState.COMPLETE, values=[0.9]), METRICS,
                        Tally(done=3, total=5, pruned=1, failed=0, best="val_acc=0.9"))
    reporter.trial_done(TrialResult(3, TrialState.FAIL, reason="RuntimeError: x"), METRICS,
                        Tally(done=3, total=5, pruned=1, failed=1, best="val_acc=0.9"))
    reporter.stop()
    raw = out.getvalue()
    assert "\x1b[" in raw  # drawn with terminal control codes
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)
    assert "digits-mlp" in text and "3/5" in text
    assert "best val_acc=0.9 · 1 pruned, 1 failed" in text
    assert "trial 3 FAIL RuntimeError: x" in text  # failures are printed above the bar


def test_on_80_columns_the_bar_count_and_time_left_stay_and_the_best_is_cut():
    """Two metrics' best values are long: rich dropped the bar and the count for them."""
    out = io.StringIO()
    reporter = RichReporter(Console(file=out, force_terminal=True, width=80))
    reporter.start("digits-mlp-tradeoff", Tally(done=5, total=30, pruned=3, failed=1,
                                                 best="val_acc=0.9722 param_count=1.234e+04"))
    shown = Console(width=80, record=True, file=io.StringIO())
    shown.print(reporter.progress.make_tasks_table(reporter.progress.tasks))
    reporter.stop()
    [line] = shown.export_text().splitlines()
    assert len(line) <= 80
    assert line.startswith("digits-mlp-tradeoff ━")
    assert "5/30" in line and "-:--:--" in line
    assert "best val_acc=0.9722" in line


def test_reporter_follows_the_stream():
    assert type(make_reporter(io.StringIO())) is PlainReporter

    class FakeTerminal(io.StringIO):
        def isatty(self):
            return True

    assert isinstance(make_reporter(FakeTerminal()), RichReporter)


def test_after_the_last_trial_the_bar_says_each_step_and_ends_on_the_best():
    """The export, the champion and the report take seconds after the last trial: the
    bar says what it does meanwhile, and is left on the screen with the best value."""
    reporter = RichReporter(Console(file=io.StringIO(), force_terminal=True, width=120))
    reporter.start("digits-mlp", Tally(done=5, total=5, best="val_acc=0.97"))

    def shown() -> str:
        table = Console(width=120, record=True, file=io.StringIO())
        table.print(reporter.progress.make_tasks_table(reporter.progress.tasks))
        return table.export_text()

    reporter.phase("choosing the champion")
    assert "5/5" in shown() and "choosing the champion..." in shown()
    reporter.stop()
    assert "best val_acc=0.97" in shown() and "champion" not in shown()
    plain = io.StringIO()
    PlainReporter(plain).phase("writing the report")
    assert plain.getvalue() == "writing the report...\n"  # a line in a log
