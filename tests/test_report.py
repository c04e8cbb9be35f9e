"""The report's plots: what they show for the study's own direction."""

from __future__ import annotations

import warnings

import optuna
import pytest
from optuna.importance import get_param_importances

from tuner.app.report import _candidates, draw_plots


def _study(directions: list[str]) -> optuna.Study:
    """y decides the highest values, x the lowest: importances depend on the direction."""
    study = optuna.create_study(directions=directions,
                                sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial: optuna.Trial):
        x, y = trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1)
        value = y if y > 0.5 else 0.5 * x
        return value if len(directions) == 1 else (value, x)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=60)
    return study


def _plotted_importances(study: optuna.Study, metrics: tuple[str, ...]) -> dict[str, float]:
    draw = dict(_candidates(study, metrics, epochs=False, several_params=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = draw["Parameter importance"]()
    names = [label.get_text() for label in ax.get_yticklabels()]
    return dict(zip(names, (bar.get_width() for bar in ax.patches), strict=True))


@pytest.mark.parametrize("directions", [["maximize"], ["maximize", "minimize"]])
def test_importances_are_for_the_study_direction(directions):
    study = _study(directions)
    plotted = _plotted_importances(study, tuple(f"m{i}" for i in range(len(directions))))
    # What Optuna computes for a maximised objective: y, which decides the top values.
    expected = get_param_importances(study, target=lambda t: -t.values[0])
    assert max(expected, key=expected.get) == "y"
    assert max(plotted, key=plotted.get) == "y"
    assert plotted["y"] == pytest.approx(expected["y"], abs=0.01)


def test_every_plot_is_drawn():
    study = _study(["maximize"])
    plots = draw_plots(study, ("m",), epochs=False, several_params=True)
    assert [title for title, _ in plots] == [
        "Optimisation history", "Parameter importance", "Parallel coordinates"]
    assert all(png for _, png in plots)
