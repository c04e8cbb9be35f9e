"""What a trial writes to MLflow, as the trial's code sees it.

Two things implement it. :class:`tuner.tracking.runs.Tracker` writes now: the driver
(for every slot it started), ``tuner sync``, a DDP trial's rank 0, and the one slot of a
torchrun job. :class:`tuner.launch.records.PipeRecords` is what a slot holds: it sends
each write to its driver, which makes it (decision: slots train, the driver records), so
a slot never imports MLflow while it trains. The calls that return something
(``start_trial``, ``why_not_resume``, ``logged_steps``) wait for the driver's answer;
the others do not; ``request_trial_run`` asks at once and waits only when its id is
needed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from optuna.trial import FrozenTrial, TrialState


class TrialRecords(Protocol):
    experiment_id: str | None
    parent_run_id: str | None

    def start_trial(self, number: int, params: Mapping[str, Any], config_yaml: str,
                    retry_of: int | None = None) -> str:
        """Create the trial's run with its params and config; its run id."""
        ...

    def request_trial_run(self, number: int) -> Callable[[], str]:
        """Begin creating a new trial's run; the call returned gives its id, waiting for
        it if need be, and must be made once (a slot's driver creates the run while the
        trial samples its params)."""
        ...

    def log_trial_inputs(self, run_id: str, params: Mapping[str, Any], config_yaml: str
                         ) -> None: ...

    def why_not_resume(self, run_id: str, attempts: Sequence[int]) -> str | None: ...

    def resume_trial(self, run_id: str, number: int, retry_of: int) -> None: ...

    def logged_steps(self, run_id: str) -> dict[str, int]: ...

    def log_metrics(self, run_id: str, rows: Sequence[tuple[str, float, int, int]]) -> None:
        ...

    def end_trial(self, run_id: str, state: TrialState, *, reason: str | None = None,
                  pruned_at: int | None = None, interrupted: bool = False,
                  only_if_running: bool = False) -> None: ...

    def end_abandoned(self, trial: FrozenTrial, reason: str) -> None: ...

    def log_error(self, run_id: str, text: str) -> None: ...

    def bind(self, run_id: str, number: int) -> None: ...

    def set_tag(self, run_id: str, key: str, value: str) -> None: ...

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None: ...

    def log_artifact(self, run_id: str, local_path: str) -> None: ...
