"""The driver's recorder: a trial waits for its own run, never for other trials' writes."""

from __future__ import annotations

import optuna
from mlflow.exceptions import MlflowException

from tests.conftest import plan
from tuner.core import attrs
from tuner.launch.protocol import Answer, Ask, Record, Written
from tuner.launch.recorder import ENDED_BEFORE_ITS_RUN, Recorder
from tuner.tracking import tags
from tuner.tracking.runs import Tracker


def test_a_new_run_is_answered_before_the_backlog_and_every_record_is_written(tmp_path):
    sweep = plan("tracking.report=false", run_dir=tmp_path / "runs")
    study = optuna.create_study(study_name=sweep.study_name)
    tracker = Tracker(sweep.cfg.tracking, sweep.study_name)
    tracker.open(study, sweep.study_params())
    first = tracker.create_trial_run(0)
    recorder = Recorder(tracker, study)
    said: list[object] = []
    # A slot's backlog: 10 batches of 400 metric values for trial 0's run (each takes
    # MLflow's SQLite store about half a second: the queue is filled long before)...
    for batch in range(10):
        rows = [(f"m{i}", float(i), 1000 * batch, batch) for i in range(400)]
        recorder.take("slot", Record("log_metrics", (first, rows)), said.append)
    # ... then its next trial asks for a run.
    recorder.take("slot", Ask("create_trial_run", (1,)), said.append)
    recorder.flush()

    [written, answer] = said  # records are not answered; the ask is, with a count
    assert isinstance(written, Written) and isinstance(answer, Answer)
    assert written.count <= 2  # answered while the backlog waited (one write may run)
    assert answer.error is None
    assert tracker.client.get_run(answer.value).data.tags["tuner.trial_number"] == "1"
    assert recorder.written("slot") == 10  # and then every record was written
    assert len(tracker.client.get_metric_history(first, "m7")) == 10


def test_a_write_mlflow_refuses_fails_the_ask_not_the_driver(tmp_path):
    sweep = plan("tracking.report=false", run_dir=tmp_path / "runs")
    study = optuna.create_study(study_name=sweep.study_name)
    tracker = Tracker(sweep.cfg.tracking, sweep.study_name)
    tracker.open(study, sweep.study_params())
    recorder = Recorder(tracker, study)
    said: list[object] = []
    recorder.take("slot", Ask("logged_steps", ("no-such-run",)), said.append)
    recorder.take("slot", Ask("delete_experiment", ("0",)), said.append)  # not a record
    recorder.flush()
    answers = [m for m in said if isinstance(m, Answer)]
    assert [a.value for a in answers] == [None, None]
    assert "no-such-run" in answers[0].error
    assert "not a trial record" in answers[1].error
    assert tracker.client.get_experiment(tracker.experiment_id).lifecycle_stage == "active"


def test_a_new_run_is_recorded_on_its_trial_or_ends_with_a_trial_that_ended(tmp_path):
    """A slot interrupted while it waits for its run's id cannot record the run on its
    trial: the driver records it there, or, if the trial ended meanwhile, ends the run."""
    sweep = plan("tracking.report=false", run_dir=tmp_path / "runs")
    study = optuna.create_study(study_name=sweep.study_name)
    tracker = Tracker(sweep.cfg.tracking, sweep.study_name)
    tracker.open(study, sweep.study_params())
    recorder = Recorder(tracker, study)
    ended, running = study.ask(), study.ask()
    study.tell(ended, state=optuna.trial.TrialState.FAIL)  # interrupted while it waited
    said: list[object] = []
    for trial in (ended, running):
        recorder.take("slot", Ask("create_trial_run", (trial.number,)), said.append)
    recorder.flush()
    [orphan, live] = [m.value for m in said if isinstance(m, Answer)]
    run = tracker.client.get_run(orphan)
    assert run.info.status == "KILLED"
    assert run.data.tags[tags.FAIL_REASON] == ENDED_BEFORE_ITS_RUN
    assert attrs.RUN_ID_ATTR not in study.trials[ended.number].user_attrs
    assert study.trials[running.number].user_attrs[attrs.RUN_ID_ATTR] == live
    assert tracker.client.get_run(live).info.status == "RUNNING"


def test_a_slot_asks_for_its_run_early_and_each_ask_gets_its_own_answer(tmp_path):
    """A slot asks for a new trial's run before it samples the trial, and reads the id
    once it needs it. An id never read (the trial was interrupted first) is not taken
    for the answer to the slot's next ask."""
    import threading
    from multiprocessing import Pipe

    from tuner.launch.records import DriverLine, PipeRecords

    sweep = plan("tracking.report=false", run_dir=tmp_path / "runs")
    study = optuna.create_study(study_name=sweep.study_name)
    tracker = Tracker(sweep.cfg.tracking, sweep.study_name)
    tracker.open(study, sweep.study_params())
    recorder = Recorder(tracker, study)
    slot_end, driver_end = Pipe()

    def driver() -> None:  # what the driver does with a slot's messages (tuner.launch.pool)
        while (message := driver_end.recv()) is not None:
            recorder.take("slot", message, driver_end.send)

    listening = threading.Thread(target=driver, daemon=True)
    listening.start()
    records = PipeRecords(DriverLine(slot_end), sweep.cfg.tracking, sweep.study_name,
                          tracker.experiment_id, tracker.parent_run_id)
    try:
        for _ in range(2):
            study.ask()
        run_id = records.request_trial_run(0)
        first = run_id()
        assert tracker.client.get_run(first).data.tags[tags.TRIAL_NUMBER] == "0"
        records.request_trial_run(1)  # never read: its trial was interrupted
        assert records.logged_steps(first) == {}  # the answer to this ask, not trial 1's id
        second = [r for r in tracker.client.search_runs([tracker.experiment_id])
                  if r.data.tags.get(tags.TRIAL_NUMBER) == "1"]
        assert len(second) == 1  # the driver still created trial 1's run, once
        assert study.trials[1].user_attrs[attrs.RUN_ID_ATTR] == second[0].info.run_id
    finally:
        slot_end.send(None)
        listening.join(timeout=30)
        recorder.flush()


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


def _prepare_failing(tmp_path, refuse: str):
    """One trial prepared in this process (as torchrun's rank 0 does, writing MLflow
    itself) while the store refuses ``refuse``; the trial as Optuna keeps it, and the
    runs of the study's experiment."""
    from tuner.trial.lifecycle import run_trial
    from tuner.trial.recording import record

    sweep = plan("tracking.report=false", run_dir=tmp_path / "runs")
    study = optuna.create_study(study_name=sweep.study_name, direction="maximize")
    tracker = _Refusing(sweep.cfg.tracking, sweep.study_name)
    tracker.open(study, sweep.study_params())
    tracker.refuse = refuse
    trial = study.ask()
    result = run_trial(sweep, trial, tracker, None, fit_in_ranks=None)
    record(study, trial, tracker, result)
    runs = [r for r in tracker.client.search_runs([tracker.experiment_id])
            if r.data.tags.get(tags.TRIAL_NUMBER) == "0"]
    return result, study.trials[0], runs


def test_a_trial_whose_inputs_the_store_refuses_ends_its_run_with_it(tmp_path):
    result, trial, runs = _prepare_failing(tmp_path, "log_trial_inputs")
    assert result.state == optuna.trial.TrialState.FAIL
    assert "refused the params" in result.reason
    [run] = runs
    assert trial.user_attrs[attrs.RUN_ID_ATTR] == run.info.run_id == result.run_id
    assert run.info.status == "FAILED"  # not left RUNNING with no trial pointing at it
    assert attrs.CONFIG_ATTR in trial.user_attrs


def test_a_trial_whose_run_the_store_refuses_keeps_its_params_and_config(tmp_path):
    result, trial, runs = _prepare_failing(tmp_path, "create_trial_run")
    assert result.state == optuna.trial.TrialState.FAIL
    assert "refused the run" in result.reason
    assert runs == [] and result.run_id is None
    assert trial.params  # sampled before the run was made, as when the run is asked
    assert attrs.CONFIG_ATTR in trial.user_attrs and attrs.SEED_ATTR in trial.user_attrs
