"""The report's plots (Optuna's plotly figures): what they show for the study's own
direction, pruned trials told apart, the Pareto front of a multi-objective study, and
the comparison's refusals."""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.importance import get_param_importances

from tuner.app.pages.comparison import check_comparable, compare, differing_params
from tuner.app.pages.study_plots import _draw, learning_curves, study_plots, top_params
from tuner.core.errors import ConfigError

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def _study(directions: list[str], n_trials: int = 60, seed: int = 0) -> optuna.Study:
    """y decides the highest values, x the lowest: importances depend on the direction."""
    study = optuna.create_study(directions=directions,
                                sampler=optuna.samplers.RandomSampler(seed=seed))
    study.set_metric_names([f"m{i}" for i in range(len(directions))])

    def objective(trial: optuna.Trial):
        x, y = trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1)
        trial.suggest_categorical("z", ["a", "b"])
        value = y if y > 0.5 else 0.5 * x
        return value if len(directions) == 1 else (value, x)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=n_trials)
    return study


def _spec(plots, title_start: str) -> dict:
    plot = next(p for p in plots if p.title.startswith(title_start))
    assert plot.spec, plot.note
    return json.loads(plot.spec)


# The expected figure is computed with an explicit target, which Optuna warns about.
@pytest.mark.filterwarnings("ignore:PedAnovaImportanceEvaluator computes")
@pytest.mark.parametrize("directions", [["maximize"], ["maximize", "minimize"]])
def test_importances_are_for_the_study_direction(directions):
    study = _study(directions)
    bars = _spec(study_plots(study, ("m0", "m1")[:len(directions)]),
                 "Parameter importances for m0")
    plotted = dict(zip(bars["data"][0]["y"], bars["data"][0]["x"], strict=True))
    # What Optuna computes for a maximised objective: y, which decides the top values.
    expected = get_param_importances(study, target=lambda t: -t.values[0])
    assert max(expected, key=expected.get) == "y"
    assert max(plotted, key=plotted.get) == "y"
    assert plotted["y"] == pytest.approx(expected["y"], abs=0.01)
    assert top_params(study)[0] == "y"


def test_every_plot_is_drawn_and_a_multi_objective_study_has_its_pareto_front():
    single = [p.title for p in study_plots(_study(["maximize"]), ("m0",))]
    assert single == ["Optimisation history (best so far)", "Parameter importances for m0",
                      "Parallel coordinates", "Slices of the top 3 parameters",
                      "Contours of the top 2 parameters", "Timeline: trials per slot"]
    pareto = study_plots(_study(["maximize", "minimize"]), ("m0", "m1"))
    assert pareto[0].title == "Pareto front" and pareto[0].spec
    assert all(p.spec for p in pareto), [p.note for p in pareto if not p.spec]


def test_pruned_trials_learning_curves_are_dashed_and_named():
    study = optuna.create_study(direction="maximize")
    for number in range(4):
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        for epoch in range(3 if number % 2 else 1):
            trial.report(number + epoch, epoch)
        study.tell(trial, number if number % 2 else None,
                   state=None if number % 2 else optuna.trial.TrialState.PRUNED)
    figure = learning_curves(study, "val_acc")
    traces = {t.name: t for t in figure.data}
    assert set(traces) == {"trial 0 (pruned)", "trial 1", "trial 2 (pruned)", "trial 3"}
    assert traces["trial 0 (pruned)"].line.dash == "dot"
    assert traces["trial 1"].line.dash is None
    # The axis names the metric; a legend names each curve; the hover says it in full.
    assert figure.layout.yaxis.title.text == "val_acc"
    assert figure.layout.xaxis.title.text == "epoch"
    assert figure.layout.showlegend is True
    assert traces["trial 1"].hovertemplate.startswith("trial 1<br>epoch %{x}: val_acc")


def test_one_trial_draws_what_it_can_and_a_failing_plot_becomes_a_note():
    study = optuna.create_study(direction="maximize")
    study.set_metric_names(["m0"])
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    plots = study_plots(study, ("m0",))  # one value of x: nothing to rank or slice
    assert [p.title for p in plots] == ["Optimisation history (best so far)",
                                        "Timeline: trials per slot"]
    failed = _draw("Broken", lambda: 1 / 0, True)
    assert failed.spec == "" and failed.note == "not drawn: division by zero"


def test_compare_refuses_other_directions_and_names_the_differing_params():
    a, b = _study(["maximize"], seed=1), _study(["maximize"], seed=2)
    comparison = compare([a, b])
    assert set(differing_params(comparison)) >= {"x", "y"}
    with pytest.raises(ConfigError, match=r"optimises m0 \(minimize\) but .* m0 \(maximize\)"):
        check_comparable([a, _study(["minimize"], n_trials=3)])


def _study_of(name: str, values: list[float]) -> optuna.Study:
    study = optuna.create_study(study_name=name, direction="maximize")
    study.set_metric_names(["val_acc"])
    for value in values:
        study.enqueue_trial({"x": value})
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    return study


def test_a_comparison_calls_a_tie_a_tie():
    from tuner.app.pages.comparison import compare, leaders, verdict

    a, b, c = (_study_of("a", [0.5, 0.9]), _study_of("b", [0.9, 0.2]),
               _study_of("c", [0.7]))
    tie = compare([a, b, c])
    assert [s.name for s in leaders(tie)] == ["a", "b"]
    assert verdict(tie) == ("a tie: a and b reach the same best, val_acc = 0.9 "
                            "(a trial 1, b trial 0)")
    assert verdict(compare([a, c])) == "best: a (trial 1, val_acc = 0.9)"


def test_a_multi_objective_report_marks_its_pareto_front_and_epochs():
    from tuner.app.pages.study_page import leaderboard, render_study_report
    from tuner.core import attrs

    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_metric_names(["val_acc", "param_count"])
    for x, y in ((0.9, 50.0), (0.8, 10.0), (0.7, 60.0)):  # the last is beaten on both
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        trial.set_user_attr(attrs.EPOCHS_ATTR, 4)
        study.tell(trial, (x, y))
    rows = {row["trial"]: row for row in leaderboard(study, ("val_acc", "param_count"))}
    assert {n: rows[n]["pareto"] for n in rows} == {0: "yes", 1: "yes", 2: None}
    assert all(row["epochs"] == 4 for row in rows.values())
    html = render_study_report(study, tracking_uri="sqlite:///x.db")
    assert "Best trial on val_acc" in html
    assert "Pareto front: trials 0, 1" in html


def _comparison_of_two_models():
    """Two studies whose parameters differ: b alone samples "width"; "momentum" is
    sampled by a only in its worst trials (SGD's), so none of its good trials has it."""
    studies = []
    for name, offset in (("a", 0.0), ("b", 0.05)):
        study = optuna.create_study(study_name=name, direction="maximize",
                                    sampler=optuna.samplers.RandomSampler(seed=len(name)))
        study.set_metric_names(["val_acc"])
        for number in range(12):
            lr = 10 ** (-4 + number / 4)  # 1e-4 .. 0.05: a log axis over decades
            params = {"lr": lr, "optimizer": "sgd" if number < 6 else "adam"}
            space = {"lr": optuna.distributions.FloatDistribution(1e-5, 1, log=True),
                     "optimizer": optuna.distributions.CategoricalDistribution(
                         ["sgd", "adam"])}
            if name == "a" and number < 6:
                params["momentum"] = 0.9
                space["momentum"] = optuna.distributions.FloatDistribution(0, 1)
            if name == "b":
                params["width"] = 16 * (number + 1)
                space["width"] = optuna.distributions.IntDistribution(16, 256)
            study.add_trial(optuna.trial.create_trial(
                params=params, distributions=space, value=number / 12 + offset))
        studies.append(study)
    return compare(studies)


def test_a_study_has_one_colour_in_every_figure_of_a_comparison():
    from tuner.app.pages.comparison_plots import comparison_plots

    colours: dict[str, set] = {"a": set(), "b": set()}
    for plot in comparison_plots(_comparison_of_two_models()):
        for trace in json.loads(plot.spec)["data"]:
            study = next((s for s in colours if trace.get("name") in (
                s, f"val_acc of {s}", f"Best Value of {s}")), None)
            if study is None:  # Optuna's grey "Infeasible Trial"
                continue
            mode = trace.get("mode", "markers")  # a box's points are markers
            if "markers" in mode:
                colours[study].add((trace.get("marker") or {}).get("color"))
            if "lines" in mode:
                colours[study].add((trace.get("line") or {}).get("color"))
    assert len(colours["a"]) == len(colours["b"]) == 1, colours
    assert colours["a"] != colours["b"] and None not in colours["a"] | colours["b"]


def test_a_parameter_panel_shows_only_the_studies_that_have_it():
    from tuner.app.pages.comparison_plots import comparison_plots

    panels = json.loads(comparison_plots(_comparison_of_two_models())[2].spec)
    titles = [a["text"] for a in panels["layout"]["annotations"]]
    # momentum is in no good trial: no panel; width is b's only, and the title says so.
    assert titles == ["lr", "optimizer", "width<br><sup>not in the good trials of a</sup>"]
    boxes = [(t["name"], t["xaxis"]) for t in panels["data"]]
    assert boxes == [("a", "x"), ("b", "x"), ("a", "x2"), ("b", "x2"), ("b", "x3")]
    assert all(t["y"] for t in panels["data"])


def test_a_log_axis_has_a_few_round_ticks_written_in_full():
    from tuner.app.pages.axes import log_axis

    # Over one decade plotly would label every digit (2, 3, ... 9): a smudge.
    assert log_axis([0.0021, 0.0176])["tickvals"] == [0.005, 0.01]
    assert log_axis([1e-5, 0.5])["tickvals"] == [1e-5, 1e-3, 1e-1]
    narrow = log_axis([0.003, 0.0048])  # no round value inside: plotly's, at most 4
    assert "tickvals" not in narrow and narrow["nticks"] == 4
    assert narrow["tickformat"] == "~g" and narrow["type"] == "log"
    from tuner.app.pages.comparison_plots import comparison_plots

    panels = comparison_plots(_comparison_of_two_models())[2]
    lr_axis = json.loads(panels.spec)["layout"]["yaxis"]
    assert lr_axis["type"] == "log" and len(lr_axis["tickvals"]) <= 4


def test_slices_and_contours_leave_out_a_parameter_sampled_in_few_trials():
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.set_metric_names(["m0"])
    for number in range(12):
        trial = study.ask()
        x, y = trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1)
        # A conditional parameter (momentum under sgd) sampled in 2 of the 12 trials.
        momentum = trial.suggest_float("momentum", 0, 1) if number < 2 else 0
        study.tell(trial, x + 0.1 * y + momentum)
    assert set(top_params(study)) == {"x", "y", "momentum"}
    plots = {p.title: p for p in study_plots(study, ("m0",))}
    assert "Slices of the top 2 parameters" in plots
    sliced = [a["title"]["text"] for k, a in json.loads(
        plots["Slices of the top 2 parameters"].spec)["layout"].items() if k.startswith("xaxis")]
    assert sorted(sliced) == ["x", "y"]
    contour = plots["Contours of the top 2 parameters"]
    assert contour.note.startswith("momentum is left out: sampled in 2 of the 12 complete "
                                   "trials.")
    assert "momentum" not in json.dumps(json.loads(contour.spec)["layout"])


def test_the_reports_slices_and_contours_label_a_log_axis_with_a_few_round_values():
    """A learning rate over one decade: plotly labelled its log axis at every digit
    (2, 3, ... 9 between the powers of ten), a smudge in a slice's small panel."""
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.set_metric_names(["m0"])
    for _ in range(12):
        trial = study.ask()
        lr = trial.suggest_float("lr", 0.002, 0.02, log=True)
        decay = trial.suggest_float("decay", 1e-5, 1e-2, log=True)
        study.tell(trial, lr + decay)
    plots = {p.title: p for p in study_plots(study, ("m0",))}
    for title in ("Slices of the top 2 parameters", "Contours of the top 2 parameters"):
        layout = json.loads(plots[title].spec)["layout"]
        logs = {a["title"]["text"]: a for k, a in layout.items()
                if k.startswith(("xaxis", "yaxis")) and a.get("type") == "log"}
        assert set(logs) == {"lr", "decay"}, title
        for name, axis in logs.items():
            assert 2 <= len(axis["tickvals"]) <= 4, (title, name, axis["tickvals"])
            assert axis["tickformat"] == "~g"
