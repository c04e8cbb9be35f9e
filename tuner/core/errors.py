"""Errors a user can act on.

A :class:`ConfigError` is raised for bad input, always before the study, a trial or an
MLflow run is created. Each :class:`Problem` names where the bad value came from (a
file, or the command line), the config key, what is wrong and what to do about it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    where: str  # a config file, "command line", or a storage/tracking location
    key: str  # dotted config key, e.g. "search.model.lr"; "" when not about one key
    message: str  # what is wrong
    fix: str = ""  # what to do about it

    def __str__(self) -> str:
        head = f"{self.where}: {self.key}: {self.message}" if self.key else (
            f"{self.where}: {self.message}"
        )
        return f"{head}\n  fix: {self.fix}" if self.fix else head


class ConfigError(Exception):
    """Bad configuration or command-line input; nothing has been written."""

    def __init__(self, problems: Problem | list[Problem]):
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def __reduce__(self):  # rebuilt from its problems when a slot sends it to the driver
        return (ConfigError, (self.problems,))


class SweepStopped(Exception):
    """The sweep stopped before its budget was spent (too many failures)."""


class RecordsPending(Exception):
    """MLflow records still wait in the outbox (the tracking server does not answer)."""


class AlreadyRunning(Exception):
    """Another execution of the same work holds its lock (a round of a scheduled job)."""


class TrackingFailed(Exception):
    """A record that has no outbox (a comparison run) could not be written to MLflow."""


class StorageUnavailable(Exception):
    """The study's storage did not answer within ``storage.outage_s`` (tuner.study.outage):
    the sweep stops cleanly, and the same command run again finishes the study."""


class SweepInterrupted(BaseException):
    """SIGTERM arrived; handled like Ctrl-C (a BaseException so trials do not catch it).

    ``raised`` says whether one was raised in this process: a library that turns it into
    another error on its way out (Optuna's journal-file lock can raise FileNotFoundError
    while it lets go of a lock it was waiting for) must not make an interrupted trial
    look like a failed one."""

    raised = False

    def __init__(self, *args: object):
        super().__init__(*args)
        SweepInterrupted.raised = True


def first_line(text: str) -> str:
    """The first non-blank line of ``text`` (messages from libraries run on for pages)."""
    lines = text.strip().splitlines()
    return lines[0] if lines else text


def describe_error(error: BaseException) -> str:
    """``Type: first line of the message``: how an error reads in a one-line reason."""
    return f"{type(error).__name__}: {first_line(str(error))}"
