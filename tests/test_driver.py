"""The driver decides, slots train: its run writer, and a trial's path on its side.

These drive real trials on a real MLflow store; the slot trains in this process
(tuner.launch.in_process), as rank 0's does under torchrun, so that what is under test
is the driver's side, not a process boundary (tests/test_slots.py has those).
"""

from __future__ import annotations

import io
import threading

import optuna
import pytest
from mlflow.exceptions import MlflowException
from optuna.trial import TrialState

from tests.conftest import FAST, plan
from tuner.app.progress import PlainReporter
from tuner.app.watch import TrialWatch
from tuner.config.machine import SlotSpec
from tuner.core import attrs
from tuner.launch.driver import Driver
from tuner.launch.in_process import InProcessSlot
from tuner.launch.run_writer import RecordFailed, RunWriter
from tuner.launch.trial_runs import ENDED_BEFORE_ITS_RUN, new_run_of
from tuner.study.trial_attrs import trial_attr
from tuner.tracking import tags
from tuner.tracking.runs import Tracker


def _opened(tmp_path, *overrides, tracker_class=Tracker):
    sweep = plan(*FAST, *overrides, run_dir=tmp_path / "runs")
    study = optuna.create_study(study_name=sweep.study_name, direction="maximize")
    tracker = tracker_class(sweep.cfg.tracking, sweep.study_name)
    tracker.open(study, sweep.study_params())
    return sweep, study, tracker


def test_a_new_run_is_made_before_the_backlog_and_every_write_after_it(tmp_path):
    _, study, tracker = _opened(tmp_path)
    first = tracker.create_trial_run(0)
    writer = RunWriter(tracker, study)
    written: list[int] = []
    gate = threading.Event()
    writer.later(gate.wait)  # hold the thread while the backlog builds up
    # A slot's backlog: 10 batches of 400 metric values for trial 0's run...
    for batch in range(10):
        rows = [(f"m{i}", float(i), 1000 * batch, batch) for i in range(400)]
        writer.later(tracker.log_metrics, first, rows, done=lambda b=batch: written.append(b))
    # ... then the next trial's run is asked for.
    run = writer.first(tracker.create_trial_run, 1)
    gate.set()
    run_id = run.result(timeout=60)
    assert len(written) <= 1  # made while the backlog waited (one write may have run)
    assert tracker.client.get_run(run_id).data.tags[tags.TRIAL_NUMBER] == "1"
    writer.flush()
    assert written == list(range(10))  # then every batch, in order
    assert len(tracker.client.get_metric_history(first, "m7")) == 10


def test_a_refusal_fails_the_call_that_waits_for_it_and_nothing_else(tmp_path, capfd):
    _, study, tracker = _opened(tmp_path)
    writer = RunWriter(tracker, study)
    read = writer.ask(tracker.logged_steps, "no-such-run")
    writer.later(tracker.set_tag, "no-such-run", "k", "v", trial=3)
    made = writer.first(tracker.create_trial_run, 4)
    with pytest.raises(RecordFailed, match="no-such-run"):
        read.result(timeout=60)
    assert tracker.client.get_run(made.result(timeout=60)).info.status == "RUNNING"
    writer.flush()
    assert "MLflow did not take a record of trial 3 (set_tag)" in capfd.readouterr().err


class _Refusing(Tracker):
    """A real tracker on the sweep's store that refuses one write, as a store that is
    full or read-only would."""

    refuse = ""

    def create_trial_run(self, number, retry_of=None):
        if self.refuse == "create_trial_run":
            raise MlflowException("the store refused the run")
        return super().create_trial_run(number, retry_of)

    def log_trial_inputs(self, run_id, params, config_yaml):
        if self.refuse == "log_trial_inputs":
            raise MlflowException("the store refused the params")
        super().log_trial_inputs(run_id, params, config_yaml)


def _drive_one(tmp_path, refuse: str = ""):
    """One trial driven to its end in this process while the store refuses ``refuse``
    (the first failure stops the sweep: max_failures=1); the trial as Optuna keeps it,
    and the runs of the study's experiment."""
    sweep, study, tracker = _opened(tmp_path, "n_trials=1", "max_failures=1",
                                    tracker_class=_Refusing)
    tracker.refuse = refuse
    watch = TrialWatch(sweep, study, PlainReporter(io.StringIO()))
    driver = Driver(sweep, study, tracker, watch.on_finished)
    slot = InProcessSlot(sweep, SlotSpec(0, None, 1), study)
    try:
        [why] = driver.run([slot], in_this_thread=True)
    finally:
        driver.close()
    runs = [r for r in tracker.client.search_runs([tracker.experiment_id])
            if r.data.tags.get(tags.TRIAL_NUMBER) == "0"]
    assert why == ("budget" if study.trials[0].state == TrialState.COMPLETE else "stopped")
    return study.trials[0], runs


def test_a_driven_trial_is_told_and_its_run_ended_with_its_metrics(tmp_path):
    trial, [run] = _drive_one(tmp_path)
    assert trial.state == TrialState.COMPLETE
    assert trial.user_attrs[attrs.RUN_ID_ATTR] == run.info.run_id
    assert run.info.status == "FINISHED"
    assert {"model.lr", "seed"} <= set(run.data.params)
    assert run.data.metrics["val_acc"] == trial.values[0]
    assert trial_attr(trial, attrs.LEASE_ATTR) is not None and attrs.SEED_ATTR in trial.user_attrs


def test_a_trial_whose_run_the_store_refuses_fails_and_keeps_its_params_and_config(tmp_path):
    trial, runs = _drive_one(tmp_path, "create_trial_run")
    assert trial.state == TrialState.FAIL
    assert "refused the run" in trial.user_attrs[attrs.FAIL_REASON_ATTR]
    assert runs == []
    assert trial.params  # sampled before the run was needed
    assert trial_attr(trial, attrs.CONFIG_ATTR) is not None and attrs.SEED_ATTR in trial.user_attrs


def test_a_trial_whose_params_the_store_refuses_still_trains_and_says_so(tmp_path, capfd):
    trial, [run] = _drive_one(tmp_path, "log_trial_inputs")
    assert trial.state == TrialState.COMPLETE
    assert run.info.status == "FINISHED" and "val_acc" in run.data.metrics
    assert "MLflow did not take a record of trial 0 (log_trial_inputs)" in capfd.readouterr().err


def test_a_new_run_is_recorded_on_its_trial_or_ends_with_a_trial_that_ended(tmp_path):
    """The run writer links a new run to its trial the moment it exists, so that
    whoever ends the trial ends the run; a trial that ended meanwhile ends it at once."""
    sweep, study, tracker = _opened(tmp_path)
    driver = Driver(sweep, study, tracker, lambda result: False)
    ended, running = study.ask(), study.ask()
    study.tell(ended, state=TrialState.FAIL)
    orphan = driver.writer.first(new_run_of, study, tracker, ended, None).result(timeout=60)
    live = driver.writer.first(new_run_of, study, tracker, running, None).result(timeout=60)
    driver.close()
    run = tracker.client.get_run(orphan)
    assert run.info.status == "KILLED"
    assert run.data.tags[tags.FAIL_REASON] == ENDED_BEFORE_ITS_RUN
    assert attrs.RUN_ID_ATTR not in study.trials[ended.number].user_attrs
    assert study.trials[running.number].user_attrs[attrs.RUN_ID_ATTR] == live


def _two_drivers_claim_one_at_a_time(sweep) -> None:
    """Two strategies of one study, as two machines' drivers hold them: while one holds
    the claim lock, the other's claim waits for it."""
    import os

    from tuner.launch.strategy import Search
    from tuner.study.storage import open_storage
    from tuner.study.studies import open_study

    sweep.run_dir.mkdir(parents=True, exist_ok=True)
    study = open_study(sweep, open_storage(sweep.cfg.storage))
    first = Search(sweep, study, lambda trial, reason: None)
    second = Search(sweep, open_study(sweep, open_storage(sweep.cfg.storage)),
                    lambda trial, reason: None)
    claimed: list = []
    other = threading.Thread(target=lambda: claimed.append(second.next_trial(os.getpid())))
    with first.lock():
        other.start()
        other.join(1.5)
        assert not claimed, "a claim went ahead while another driver held the lock"
    other.join(30)
    assert claimed and claimed[0].trial is not None


@pytest.mark.parametrize("storage", ["journal", "sqlite"])
def test_two_drivers_never_claim_at_once_on_an_embedded_storage(storage, tmp_path):
    _two_drivers_claim_one_at_a_time(plan(*FAST, f"storage={storage}", run_dir=tmp_path / "r"))


class _CountingSampler(optuna.samplers.RandomSampler):
    """Records, each time a trial is sampled, how many trials had ended by then."""

    def __init__(self):
        super().__init__(seed=0)
        self.ended_before: dict[int, int] = {}  # trial number -> trials ended by then

    def sample_independent(self, study, trial, name, distribution):
        ended = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        self.ended_before.setdefault(trial.number, len(ended))
        return super().sample_independent(study, trial, name, distribution)


def test_the_next_trial_is_claimed_ahead_but_sampled_with_every_result_known(tmp_path):
    """The slot's next trial is claimed and its run made while the current one trains;
    it is sampled only once the slot frees, so the sampler sees the trial before it."""
    sweep = plan(*FAST, "n_trials=3", run_dir=tmp_path / "runs")
    sampler = _CountingSampler()
    study = optuna.create_study(study_name=sweep.study_name, direction="maximize",
                                sampler=sampler)
    tracker = Tracker(sweep.cfg.tracking, sweep.study_name)
    tracker.open(study, sweep.study_params())
    driver = Driver(sweep, study, tracker, TrialWatch(sweep, study, PlainReporter(
        io.StringIO())).on_finished)
    try:
        driver.run([InProcessSlot(sweep, SlotSpec(0, None, 1), study)], in_this_thread=True)
    finally:
        driver.close()
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    assert sampler.ended_before == {0: 0, 1: 1, 2: 2}
    runs = {r.data.tags[tags.TRIAL_NUMBER]: r for r in tracker.client.search_runs(
        [tracker.experiment_id]) if tags.TRIAL_NUMBER in r.data.tags}
    assert sorted(runs) == ["0", "1", "2"]
    assert all(r.info.status == "FINISHED" for r in runs.values())


def test_a_trial_the_driver_still_holds_when_its_slots_stop_is_ended_not_left_running(tmp_path):
    """The guard after an interruption: a trial this driver claimed (its lease kept)
    that no slot thread ended, as a claimed-ahead trial once was (a full test run saw
    one RUNNING after Ctrl-C), ends FAIL as not started, with its run."""
    from types import SimpleNamespace

    from tuner.launch.driver import NOT_STARTED

    sweep, study, tracker = _opened(tmp_path, "n_trials=3")
    driver = Driver(sweep, study, tracker, lambda result: False)
    ready = driver.claim(SimpleNamespace(pid=123), ahead=True)  # claimed, its run on the way
    run_id = ready.new_run.result(timeout=60)
    assert study.trials[0].state == TrialState.RUNNING
    driver._release_leftovers()
    driver.close()
    left = study.trials[0]
    assert left.state == TrialState.FAIL
    assert left.user_attrs[attrs.FAIL_REASON_ATTR] == NOT_STARTED
    assert tracker.client.get_run(run_id).info.status == "KILLED"
    assert driver.leases.held() == []
