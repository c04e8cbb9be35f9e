"""`tuner report` and `tuner compare` through the real CLI, over real sweeps; the pages'
content (the browser tests draw them: tests/test_browser.py)."""

from __future__ import annotations

import base64
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pytest

from tests.conftest import (
    PAGES_STUDIES,
    client_for,
    files_under,
    load_study,
    start,
    stop,
    tuner_here,
)
from tests.servers import free_port
from tuner.app.pages.study_page import render_study_report
from tuner.core import attrs
from tuner.tracking import tags

REPORT_PLOTS = ["Optimisation history (best so far)", "Learning curves, pruned trials dashed",
                "Parameter importances for val_acc", "Parallel coordinates",
                "Slices of the top 3 parameters", "Contours of the top 2 parameters",
                "Timeline: trials per slot"]
MAX_REPORT_BYTES = 5_000_000
# Optuna marks set_metric_names experimental; the tests use it as tuner's sweeps do.
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def figure_titles(html: str) -> list[str]:
    return re.findall(r"<figcaption>(.*?)</figcaption>", html)


def test_report_command_writes_one_self_contained_page(two_studies):
    out = two_studies / "pages" / "mlp.html"
    result = tuner_here("report", "digits-mlp", "--out", str(out), cwd=two_studies)
    assert result.returncode == 0, result.stderr
    assert f"report written: {out}" in result.stdout
    html = out.read_text()
    study = load_study(two_studies / "runs", "digits-mlp")
    assert figure_titles(html) == REPORT_PLOTS
    assert html.count('<div class="plot" data-spec=') == len(REPORT_PLOTS)
    # plotly.js once, inside the page: no script or style is fetched from anywhere.
    assert html.count('id="plotly-gz"') == 1
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=", html)
    assert len(out.read_bytes()) < MAX_REPORT_BYTES
    # The leaderboard: every trial, the best first, linked to its MLflow run.
    rows = re.findall(r"<tr class=\"(best|)\">", html)
    assert len(rows) == len(study.trials) == PAGES_STUDIES["digits-mlp"]
    assert rows[0] == "best" and rows.count("best") == 1
    best_run = study.best_trial.user_attrs[attrs.RUN_ID_ATTR]
    assert f'href="http://127.0.0.1:5000/#/runs/{best_run}"' in html
    assert f"Trial {study.best_trial.number}: val_acc = {study.best_value:.6g}" in html


def test_report_defaults_to_the_study_name_here(two_studies, tmp_path):
    result = tuner_here("report", f"run_dir={two_studies / 'runs'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["digits-mlp-report.html"]


def test_sweep_logs_the_interactive_report_on_its_parent_run(two_studies):
    run_dir = two_studies / "runs"
    study = load_study(run_dir, "digits-mlp-b")
    client = client_for(run_dir)
    report = Path(client.download_artifacts(study.user_attrs[attrs.PARENT_RUN_ATTR],
                                            "report.html")).read_text()
    # Which parameters get slices and contours depends on the sweep's own trials (two
    # slots: which trial ends first decides what TPE samples): a conditional parameter
    # sampled in too few trials is left out, and said so (tuner.app.pages.study_plots).
    titles = figure_titles(report)
    varying = [t for t in titles if t.startswith(("Slices of the top", "Contours of the top"))]
    assert [t for t in titles if t not in varying] == [
        t for t in REPORT_PLOTS if not t.startswith(("Slices", "Contours"))]
    assert varying and all(re.fullmatch(r"(Slices|Contours) of the top [1-3] parameters?", t)
                           for t in varying), varying
    assert "Champion: registered model <code>digits-mlp-b</code>" in report


def _study_of_30_trials() -> optuna.Study:
    """30 trials of four params with ten epochs each, half of them pruned: a sweep's size."""
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    study.set_metric_names(["val_acc"])
    study.set_user_attr(attrs.N_TRIALS_ATTR, 30)
    for number in range(30):
        trial = study.ask()
        lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
        width = trial.suggest_int("width", 16, 512, log=True)
        dropout = trial.suggest_float("dropout", 0, 0.5)
        trial.suggest_categorical("optimizer", ["sgd", "adam", "rmsprop"])
        value = 1 - dropout / 2 - abs(lr - 0.01) - 10 / width
        for epoch in range(10 if number % 2 else 4):
            trial.report(value * (epoch + 1) / 10, epoch)
        study.tell(trial, value if number % 2 else None,
                   state=None if number % 2 else optuna.trial.TrialState.PRUNED)
    return study


def test_a_report_of_30_trials_stays_under_5_mb():
    html = render_study_report(_study_of_30_trials(), tracking_uri="sqlite:///x.db")
    assert len(html.encode()) < MAX_REPORT_BYTES
    assert figure_titles(html) == REPORT_PLOTS


def test_a_study_with_no_finished_trial_gets_a_report_that_says_so(tmp_path):
    run_dir = tmp_path / "runs"
    run_dir.mkdir()
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(run_dir / "optuna.journal")))
    study = optuna.create_study(study_name="starting", storage=storage, direction="maximize")
    study.ask()  # one trial training: a sweep that just started
    result = tuner_here("report", "starting", f"run_dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    html = (tmp_path / "starting-report.html").read_text()
    assert "No trial of this study has finished yet (1 running)" in html
    assert "Traceback" not in html and 'id="plotly-gz"' not in html


def test_an_unknown_study_lists_the_studies_there(two_studies, tmp_path):
    for command in (["report", "nope"], ["compare", "digits-mlp", "nope"],
                    ["dashboard", "nope"]):
        result = tuner_here(*command, f"run_dir={two_studies / 'runs'}", cwd=tmp_path)
        assert result.returncode == 2, (command, result.stderr)
        assert "no study named 'nope' in this storage" in result.stderr
        assert "studies here: digits-mlp, digits-mlp-b" in result.stderr
    assert files_under(tmp_path) == []


def test_compare_prints_the_studies_side_by_side_and_logs_a_run(two_studies):
    page = two_studies / "compare.html"
    result = tuner_here("compare", "digits-mlp", "digits-mlp-b", "--html", str(page),
                       cwd=two_studies)
    assert result.returncode == 0, result.stderr
    run_dir = two_studies / "runs"
    a, b = (load_study(run_dir, name) for name in PAGES_STUDIES)
    lines = result.stdout.splitlines()
    best_row = next(line for line in lines if "best val_acc (maximize)" in line)
    assert f"{a.best_value:.6g}" in best_row and f"{b.best_value:.6g}" in best_row
    # Also a param that only one best trial has (momentum: SGD's, not Adam's).
    differing = {k for k in a.best_params.keys() | b.best_params.keys()
                 if a.best_params.get(k) != b.best_params.get(k)}
    shown = {m.group(1) for line in lines if (m := re.search(r"best trial's (\S+)", line))}
    assert shown == differing
    if a.best_value == b.best_value:  # common on a small validation set: no one wins
        assert "a tie: digits-mlp and digits-mlp-b reach the same best" in result.stdout
    else:
        leader = max((a, b), key=lambda s: s.best_value)
        assert f"best: {leader.study_name} (trial {leader.best_trial.number}" in result.stdout
    assert f"page written: {page}" in result.stdout
    html = page.read_text()
    assert html.count('<div class="plot" data-spec=') == 3
    for study in (a, b):  # each study links its parent run, as the report links trials
        parent = study.user_attrs[attrs.PARENT_RUN_ATTR]
        assert (f'<a href="http://127.0.0.1:5000/#/runs/{parent}" '
                f'data-mlflow-route="#/runs/{parent}"') in html
    # The MLflow run: in the first study's experiment, tagged with both names.
    run_id = re.search(r"logged as MLflow run (\w+)", result.stdout).group(1)
    run = client_for(run_dir).get_run(run_id)
    experiment = client_for(run_dir).get_experiment_by_name("digits-mlp")
    assert run.info.experiment_id == experiment.experiment_id
    assert run.info.status == "FINISHED"
    assert run.data.tags[tags.ROLE] == "comparison"
    assert run.data.tags[tags.COMPARED_STUDIES] == "digits-mlp,digits-mlp-b"
    assert run.data.metrics["best_val_acc/digits-mlp-b"] == pytest.approx(b.best_value)
    artifacts = {f.path for f in client_for(run_dir).list_artifacts(run_id)}
    assert artifacts == {"comparison.html", "comparison.json"}


def _runs(run_dir: Path) -> int:
    client = client_for(run_dir)
    return len(client.search_runs([e.experiment_id for e in client.search_experiments()]))


def test_compare_refuses_studies_of_other_metrics_or_directions(two_studies, tmp_path):
    run_dir = two_studies / "runs"
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(run_dir / "optuna.journal")))
    loss = optuna.create_study(study_name="by-loss", storage=storage, direction="minimize")
    loss.set_metric_names(["val_loss"])
    before = _runs(run_dir)
    result = tuner_here("compare", "digits-mlp", "by-loss", "--html", str(tmp_path / "x.html"),
                       f"run_dir={run_dir}", cwd=tmp_path)
    optuna.delete_study(study_name="by-loss", storage=storage)
    assert result.returncode == 2
    assert ("'by-loss' optimises val_loss (minimize) but 'digits-mlp' optimises val_acc "
            "(maximize)") in result.stderr
    assert "nothing was written" in result.stderr
    assert files_under(tmp_path) == [] and _runs(run_dir) == before


@pytest.mark.parametrize("names, message", [
    (["digits-mlp"], "compare needs two studies or more, got 1"),
    (["digits-mlp", "digits-mlp"], "'digits-mlp' is named more than once")])
def test_compare_needs_two_different_studies(two_studies, names, message):
    result = tuner_here("compare", *names, "--no-log", cwd=two_studies)
    assert result.returncode == 2 and message in result.stderr


def test_dashboard_refuses_a_public_host_without_a_password(two_studies, monkeypatch):
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    result = tuner_here("dashboard", "--host", "0.0.0.0", cwd=two_studies)
    assert result.returncode == 2
    assert "refusing to bind 0.0.0.0 without authentication" in result.stderr


def _status(url: str, method: str, user: str | None = None, secret: str = "") -> int:
    request = urllib.request.Request(url, method=method,
                                     data=b"{}" if method == "POST" else None)
    if user is not None:
        token = base64.b64encode(f"{user}:{secret}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_dashboard_off_loopback_asks_for_the_admin_password(two_studies):
    port = free_port()
    password = "correct horse battery"
    process = start(["dashboard", "digits-mlp", "--host", "0.0.0.0", "--port", str(port)],
                    two_studies, env={"MLFLOW_AUTH_ADMIN_PASSWORD": password})
    url = f"http://127.0.0.1:{port}/api/studies"
    try:
        deadline = time.monotonic() + 60
        while True:  # up once it answers at all: without credentials, that answer is 401
            assert process.poll() is None and time.monotonic() < deadline
            try:
                assert _status(url, "GET") == 401
                break
            except urllib.error.URLError:  # not listening yet
                time.sleep(0.3)
        assert _status(url, "GET", "admin", "wrong") == 401
        assert _status(url, "GET", "admin", password) == 200
        assert _status(url, "POST", "admin", password) == 405  # read-only for the admin too
    finally:
        stop(process)


def test_words_after_options_reach_only_commands_that_take_words(tmp_path):
    result = tuner_here("schedule", "remove", "nightly", "weekly", cwd=tmp_path)
    assert result.returncode == 2 and "unrecognized arguments: weekly" in result.stderr
    result = tuner_here("report", "--out", str(tmp_path / "r.html"), "nope",
                       f"run_dir={tmp_path}", cwd=tmp_path)
    assert result.returncode == 2 and "no study journal there yet" in result.stderr


def test_trial_links_go_to_the_tracking_server_without_its_password():
    from tuner.app.pages.run_links import tracking_url

    assert tracking_url("https://me:s3cret@mlflow.example:5000/") == (
        "https://mlflow.example:5000")
    assert tracking_url("sqlite:///runs/mlflow.db") == "http://127.0.0.1:5000"
    study = optuna.create_study(direction="maximize")
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    trial.set_user_attr(attrs.RUN_ID_ATTR, "abc123")
    study.tell(trial, 0.5)
    html = render_study_report(study, tracking_uri="https://me:s3cret@mlflow.example:5000/")
    # The file's link, and the route the page's script keeps for the UI around it.
    assert ('<a href="https://mlflow.example:5000/#/runs/abc123" '
            'data-mlflow-route="#/runs/abc123"') in html
    assert "s3cret" not in html
