"""What a person sees, in a real browser (Debian's chromium driven by Playwright): the
MLflow UI over a sweep's records, the report inside MLflow's artifact viewer, the pages of
`tuner report` and `tuner compare --html`, and `tuner dashboard`.

Screenshots land in test-output/screenshots/ (tests/browser.py), to be looked at.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.browser import WatchedPage, chromium, wait_for_plots
from tests.conftest import (
    PAGES_STUDIES,
    client_for,
    load_study,
    run_tuner,
    start,
    stop,
    wait_for_http,
)
from tests.servers import free_port
from tuner.core import attrs

REPORT_PLOTS = 7  # tests/test_pages.py names them
COMPARE_PLOTS = 3
# The tick labels of a figure's axes that overlap a neighbour on their axis, as
# "subplot axis: label, label".
OVERLAPPING_LABELS = """div => {
  const overlaps = [];
  for (const subplot of div.querySelectorAll(".cartesianlayer .subplot")) {
    for (const axis of ["x", "y"]) {
      const boxes = Array.from(subplot.querySelectorAll(`.${axis}axislayer-above text`))
        .map(text => [text.textContent, text.getBoundingClientRect()])
        .filter(([label, box]) => label && box.width > 0);
      const [start, end] = axis === "x" ? ["left", "right"] : ["top", "bottom"];
      boxes.sort((p, q) => p[1][start] - q[1][start]);
      for (let i = 1; i < boxes.length; i++) {
        if (boxes[i][1][start] < boxes[i - 1][1][end] - 1) {
          overlaps.push(`${subplot.classList[1]} ${axis}: ${boxes[i - 1][0]}, ${boxes[i][0]}`);
        }
      }
    }
  }
  return overlaps;
}"""


@pytest.fixture(scope="module")
def browser():
    with chromium() as instance:
        yield instance


@pytest.fixture(scope="module")
def mlflow_ui(two_studies):
    """`tuner ui` over the two studies' records; its base URL."""
    port = free_port()
    process = start(["ui", "--port", str(port)], two_studies)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


@pytest.fixture
def page(browser):
    watched = WatchedPage(browser)
    yield watched
    watched.close()


def test_experiment_page_lists_the_parent_run_with_its_trials(two_studies, mlflow_ui, page):
    experiment = client_for(two_studies / "runs").get_experiment_by_name("digits-mlp")
    page.page.goto(f"{mlflow_ui}/#/experiments/{experiment.experiment_id}/runs")
    parent = page.page.locator("[role=row]").filter(
        has=page.page.get_by_text("digits-mlp", exact=True))
    parent.wait_for(timeout=60_000)
    # Nested runs are folded under their parent: unfold them.
    parent.locator("button[data-component-id*=runnamecellrenderer]").click()
    page.page.get_by_text("trial-0", exact=True).wait_for(timeout=30_000)
    page.screenshot("mlflow-experiment", full_page=False)
    names = page.page.locator("[role=row] a").all_inner_texts()
    trials = {n for n in names if re.fullmatch(r"trial-\d+( \(pruned\))?", n)}
    study = load_study(two_studies / "runs", "digits-mlp")
    # A pruned trial's run says so in its name; the table shows it apart from the others.
    assert trials == {f"trial-{t.number}" + (" (pruned)" if t.state.name == "PRUNED" else "")
                      for t in study.trials}
    assert names.index("digits-mlp") < min(names.index(t) for t in trials)


def test_a_trial_run_shows_its_params_and_metric_charts(two_studies, mlflow_ui, page):
    study = load_study(two_studies / "runs", "digits-mlp")
    best = study.best_trial
    page.page.goto(f"{mlflow_ui}/#/runs/{best.user_attrs[attrs.RUN_ID_ATTR]}")
    page.page.get_by_text("model.lr", exact=True).first.wait_for(timeout=60_000)
    assert page.page.get_by_text(f"trial-{best.number}", exact=True).first.is_visible()
    page.page.get_by_role("tab", name="Model metrics").click()
    page.page.get_by_text("val_acc", exact=True).first.wait_for(timeout=30_000)
    charts = page.page.locator(".js-plotly-plot")
    charts.first.wait_for(timeout=30_000)
    page.screenshot("mlflow-trial-metrics", full_page=False)
    # One chart per logged metric: val_acc, val_loss, train_loss (a line each, stepped by
    # epoch) and param_count (one point); no `epoch` chart.
    assert charts.count() >= 4
    assert page.page.locator(".js-plotly-plot .scatterlayer path.js-line").count() >= 3
    assert not page.page.get_by_text("epoch", exact=True).is_visible()


def test_the_report_renders_inside_mlflows_artifact_viewer(two_studies, mlflow_ui, page):
    run_dir = two_studies / "runs"
    study = load_study(run_dir, "digits-mlp")
    parent = study.user_attrs[attrs.PARENT_RUN_ATTR]
    experiment = client_for(run_dir).get_experiment_by_name("digits-mlp").experiment_id
    page.page.goto(f"{mlflow_ui}/#/experiments/{experiment}/runs/{parent}/artifacts/"
                   "report.html")
    frame = page.page.frame_locator("iframe").first
    frame.locator("body[data-plots-drawn]").wait_for(state="attached", timeout=90_000)
    drawn = frame.locator("body").get_attribute("data-plots-drawn")
    frame.locator(".main-svg").first.wait_for(timeout=30_000)
    page.screenshot("mlflow-artifact-report", full_page=False)
    assert drawn == str(REPORT_PLOTS)
    assert frame.locator("div.plot .main-svg").count() >= REPORT_PLOTS


def _artifact_viewer(page: WatchedPage, mlflow_ui: str, run_dir, study_name: str,
                     artifact: str):
    """The frame of MLflow's artifact viewer showing ``artifact`` of the study's parent run,
    once its page has drawn its plots."""
    study = load_study(run_dir, study_name)
    parent = study.user_attrs[attrs.PARENT_RUN_ATTR]
    experiment = client_for(run_dir).get_experiment_by_name(study_name).experiment_id
    page.page.goto(f"{mlflow_ui}/#/experiments/{experiment}/runs/{parent}/artifacts/{artifact}")
    frame = page.page.frame_locator("iframe").first
    frame.locator("body[data-plots-drawn]").wait_for(state="attached", timeout=90_000)
    return frame


def test_a_trial_link_in_the_artifact_viewer_leads_to_that_uis_run_page(two_studies,
                                                                      mlflow_ui, page):
    """The report's file links `tuner ui` on its default port; shown in a UI on another
    port, its links go to that UI. MLflow's viewer (sandbox="allow-scripts") lets no
    link leave the frame: a click shows the address to copy, and that address, opened,
    is the trial's run page."""
    run_dir = two_studies / "runs"
    study = load_study(run_dir, "digits-mlp")
    best = study.best_trial
    run_id = best.user_attrs[attrs.RUN_ID_ATTR]
    frame = _artifact_viewer(page, mlflow_ui, run_dir, "digits-mlp", "report.html")
    viewer = page.page.url
    link = frame.locator("table#leaderboard a", has_text=re.compile(rf"^{best.number}$"))
    assert link.evaluate("a => a.href") == f"{mlflow_ui}/#/runs/{run_id}"
    link.click()
    address = frame.locator("#run-address input")
    address.wait_for(timeout=10_000)
    page.screenshot("mlflow-artifact-run-address", full_page=False)
    assert address.input_value() == f"{mlflow_ui}/#/runs/{run_id}"
    assert page.page.url == viewer  # the sandbox kept the top window where it was
    page.page.goto(address.input_value())
    page.page.get_by_text(f"trial-{best.number}", exact=True).first.wait_for(timeout=60_000)
    experiment = client_for(run_dir).get_experiment_by_name("digits-mlp").experiment_id
    assert page.page.url == f"{mlflow_ui}/#/experiments/{experiment}/runs/{run_id}"


def test_a_frame_that_may_navigate_the_top_window_lands_on_the_trials_run_page(
        two_studies, mlflow_ui, page):
    """Where the frame's sandbox allows it (allow-top-navigation-by-user-activation),
    a click takes the top window to the trial's run page of the UI around the frame."""
    run_dir = two_studies / "runs"
    study = load_study(run_dir, "digits-mlp")
    trial = study.trials[0]
    report = Path(client_for(run_dir).download_artifacts(
        study.user_attrs[attrs.PARENT_RUN_ATTR], "report.html")).read_text()
    page.page.goto(f"{mlflow_ui}/#/")
    page.page.wait_for_load_state("load")
    # A frame as MLflow's viewer makes one (a blob of the page), with the one more flag.
    page.page.evaluate("""html => {
        const frame = document.createElement("iframe");
        frame.sandbox = "allow-scripts allow-top-navigation-by-user-activation";
        frame.style = "position: fixed; inset: 0; width: 100%; height: 100%; z-index: 9999";
        frame.src = URL.createObjectURL(new Blob([html], {type: "text/html"}));
        document.body.append(frame);
    }""", report)
    frame = page.page.frame_locator("iframe[sandbox]")
    frame.locator("body[data-plots-drawn]").wait_for(state="attached", timeout=90_000)
    frame.locator("table#leaderboard a", has_text=re.compile(r"^0$")).click()
    page.page.get_by_text("trial-0", exact=True).first.wait_for(timeout=60_000)
    experiment = client_for(run_dir).get_experiment_by_name("digits-mlp").experiment_id
    run_id = trial.user_attrs[attrs.RUN_ID_ATTR]
    assert page.page.url == f"{mlflow_ui}/#/experiments/{experiment}/runs/{run_id}"


def _open_page(page: WatchedPage, path, name: str) -> str:
    page.page.goto(path.as_uri())
    drawn = wait_for_plots(page.page)
    page.screenshot(name)
    return drawn


def test_report_page_draws_every_plot_without_errors(two_studies, page, tmp_path):
    out = tmp_path / "report.html"
    assert run_tuner("report", "digits-mlp", "--out", str(out), cwd=two_studies).returncode == 0
    assert _open_page(page, out, "tuner-report") == str(REPORT_PLOTS)
    assert page.errors == []
    assert page.page.locator("div.plot .main-svg").count() >= REPORT_PLOTS
    # Interactive: hovering a point of the history shows plotly's hover label.
    history = page.page.locator("div.plot").first
    # (force: plotly's drag layer lies over the points and takes the mouse, as it should)
    history.locator(".scatterlayer .point").first.hover(force=True)
    page.page.locator(".hoverlayer .hovertext").first.wait_for(timeout=10_000)
    # A timeline bar's hover says when its trial started and how long it took (it said
    # "NaN ms": %{x} on a date axis is a date, not the bar's length).
    timeline = page.page.locator("figure", has_text="Timeline: trials per slot")
    timeline.locator(".barlayer .point path").first.hover(force=True)
    label = timeline.locator(".hoverlayer .hovertext").first
    label.wait_for(timeout=10_000)
    text = label.text_content()
    assert re.search(r"trial \d+: started \d\d:\d\d:\d\d, took [\d.]+ (ms|s)", text), text
    assert "NaN" not in text
    # The leaderboard sorts by a clicked heading (numbers as numbers, empty cells last),
    # and its trial column stays in view when the table scrolls sideways.
    board = page.page.locator("table#leaderboard")
    heading = board.locator("th", has_text="val_acc")
    column = board.locator("th").evaluate_all(
        "ths => ths.findIndex(th => th.textContent.trim() === 'val_acc')")
    values_js = (f"rows => rows.slice(1).map(r => r.children[{column}].textContent.trim())"
                 ".filter(v => v !== '').map(Number)")
    heading.click()
    ascending = board.locator("tr").evaluate_all(values_js)
    assert ascending == sorted(ascending) and len(ascending) > 1
    heading.click()
    assert board.locator("tr").evaluate_all(values_js) == sorted(ascending, reverse=True)
    assert heading.get_attribute("aria-sort") == "descending"
    sticky = board.locator("td").first.evaluate("td => getComputedStyle(td).position")
    assert sticky == "sticky"


# Pairs of a figure's annotations (Optuna's parallel coordinates write their tick labels
# so) whose boxes overlap.
OVERLAPPING_ANNOTATIONS = """div => {
  const boxes = Array.from(div.querySelectorAll(".annotation text"))
    .map(text => [text.textContent, text.getBoundingClientRect()]);
  const overlaps = [];
  boxes.forEach(([a, p], i) => boxes.slice(i + 1).forEach(([b, q]) => {
    if (Math.min(p.right, q.right) - Math.max(p.left, q.left) > 1 &&
        Math.min(p.bottom, q.bottom) - Math.max(p.top, q.top) > 1) overlaps.push(`${a} / ${b}`);
  }));
  return overlaps;
}"""


@pytest.mark.parametrize("width", [900, 600])  # 600: about MLflow's artifact viewer
def test_parallel_coordinates_labels_stay_apart_in_a_narrow_page(two_studies, browser,
                                                                 tmp_path, width):
    out = tmp_path / "report.html"
    assert run_tuner("report", "digits-mlp", "--out", str(out), cwd=two_studies).returncode == 0
    page = WatchedPage(browser, width=width)
    try:
        page.page.goto(out.as_uri())
        assert wait_for_plots(page.page) == str(REPORT_PLOTS)
        figure = page.page.locator("figure", has_text="Parallel coordinates")
        figure.scroll_into_view_if_needed()
        figure.screenshot(path=str(page.screenshot(f"parallel-{width}").with_name(
            f"parallel-{width}-figure.png")))
        assert figure.locator("div.plot").evaluate(OVERLAPPING_ANNOTATIONS) == []
        # The figure keeps its room and the page scrolls it sideways.
        plot_width = figure.locator("div.plot").evaluate("d => d.offsetWidth")
        assert plot_width > width
    finally:
        page.close()


def test_compare_page_draws_every_plot_without_errors(two_studies, page, tmp_path):
    out = tmp_path / "compare.html"
    result = run_tuner("compare", "digits-mlp", "digits-mlp-b", "--html", str(out), "--no-log",
                       cwd=two_studies)
    assert result.returncode == 0, result.stderr
    assert _open_page(page, out, "tuner-compare") == str(COMPARE_PLOTS)
    assert page.errors == []
    assert page.page.locator("#comparison tr").count() >= 8
    legend = page.page.locator("div.plot").nth(1).locator(".legendtext").all_text_contents()
    assert legend == list(PAGES_STUDIES)
    # In MLflow's narrow viewer, too, no panel's axis labels run into each other (a log
    # axis over one decade was labelled at every digit).
    page.page.set_viewport_size({"width": 900, "height": 900})
    page.page.wait_for_timeout(500)  # plotly redraws the responsive figures
    panels = page.page.locator("div.plot").nth(2)
    page.screenshot("tuner-compare-900")
    assert panels.evaluate(OVERLAPPING_LABELS) == []


def _status(url: str, method: str) -> int:
    request = urllib.request.Request(url, method=method, data=b"{}" if method != "GET" else None)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_dashboard_shows_the_study_read_only_beside_a_running_sweep(two_studies, page):
    journal = two_studies / "runs" / "optuna.journal"
    before = journal.read_bytes()
    port = free_port()
    process = start(["dashboard", "digits-mlp-b", "--port", str(port)], two_studies)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/api/studies", process)
        line = process.stdout.readline()
        url = re.search(r"(http://\S+/dashboard/studies/\d+)", line).group(1)
        page.page.goto(url)
        page.page.get_by_text(re.compile(r"digits-mlp-b \(id=\d+\)")).wait_for(
            timeout=60_000)
        best = load_study(two_studies / "runs", "digits-mlp-b").best_trial.number
        page.page.get_by_text(f"Best Trial (number={best})").wait_for(timeout=60_000)
        page.page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
        page.page.wait_for_timeout(1000)  # let its plots settle before the picture
        page.screenshot("tuner-dashboard", full_page=False)
        # The trials page fits the window: it shows a person's attributes (the run id,
        # the seed), not tuner's own (the one-line config made it 19,087 px wide; the
        # lease, the search space), which are Optuna system attributes it does not show.
        page.page.goto(f"{url}/trials")
        page.page.get_by_text("mlflow_run_id").first.wait_for(timeout=60_000)
        page.page.wait_for_timeout(500)
        page.screenshot("tuner-dashboard-trials", full_page=False)
        width = page.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 1400, f"the trials page is {width} px wide"
        text = page.page.inner_text("body")
        for internal in ("lease_until", "supervisor", "search_space", "_target_"):
            assert internal not in text, f"the trials page shows {internal}"
        # Read-only: writes are refused, and browsing changed nothing in the storage.
        api = f"http://127.0.0.1:{port}/api/studies"
        assert _status(api, "POST") == 405 and _status(f"{api}/1", "DELETE") == 405
        assert journal.read_bytes() == before
        # A sweep tops the study up while the dashboard is open and polled.
        n = PAGES_STUDIES["digits-mlp-b"] + 2
        # (Its few lines fit in the pipe's buffer, which is read once it has ended.)
        sweep = start(["sweep", "study_name=digits-mlp-b", f"n_trials={n}", "seed=3",
                       "trainer.max_epochs=3"], two_studies)
        # `tuner report` reads the same study meanwhile.
        report = run_tuner("report", "digits-mlp-b", "--out", str(two_studies / "live.html"),
                           cwd=two_studies)
        assert report.returncode == 0, report.stderr
        while sweep.poll() is None:
            assert _status(api, "GET") == 200
            page.page.wait_for_timeout(500)
        assert sweep.returncode == 0, sweep.stdout.read()
        study = load_study(two_studies / "runs", "digits-mlp-b")
        assert len(study.trials) == n
        # The dashboard sees the new trials (its API is what the page polls).
        with urllib.request.urlopen(f"{api}/{study._study_id}", timeout=10) as response:
            assert len(json.load(response)["trials"]) == n
    finally:
        stop(process)
