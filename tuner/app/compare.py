"""``tuner compare A B [C ...]``: studies side by side, in the terminal, a page and MLflow.

Every check comes first (each study exists, the names differ, the metrics and
directions agree); then the page is written and the comparison run logged.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tuner.app.lookup import existing_storage, existing_tracking_uri, load_study
from tuner.app.pages.comparison import Comparison, compare, leaders, table_rows, verdict
from tuner.app.pages.comparison_plots import comparison_plots
from tuner.app.pages.html import render, write_page
from tuner.app.pages.run_links import LOCAL_UI, run_link, tracking_url
from tuner.config.compose import Composed
from tuner.core import attrs
from tuner.core.errors import ConfigError, Problem, TrackingFailed, describe_error
from tuner.core.masking import mask
from tuner.tracking.comparisons import log_comparison, metric_key

TEMPLATE = "compare.html.j2"


@dataclass(frozen=True)
class CompareOutcome:
    comparison: Comparison
    page: Path | None  # where --html wrote the page
    run_id: str | None  # the comparison's MLflow run, unless --no-log


def check_names(names: list[str]) -> None:
    if len(names) < 2:
        raise ConfigError(Problem("command line", "studies",
                                  f"compare needs two studies or more, got {len(names)}",
                                  "name them: tuner compare STUDY_A STUDY_B [overrides]"))
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(Problem("command line", "studies",
                                  f"'{repeated[0]}' is named more than once",
                                  "name each study once"))


def run_compare(composed: Composed, names: list[str], html: Path | None, log: bool,
                show: Callable[[Comparison], None]) -> CompareOutcome:
    """Check, compare, ``show`` the comparison (the terminal table), write the page to
    ``html``, then log the comparison run (``log``). Every check comes before the first
    write; a tracking store that is not there is one of them."""
    check_names(names)
    storage = existing_storage(composed)  # opened once: a journal is read whole each time
    studies = [load_study(composed, name, storage) for name in names]
    uri = existing_tracking_uri(composed) if log else ""
    comparison = compare(studies)
    show(comparison)
    page_html = (render_comparison(comparison, composed.cfg.tracking.tracking_uri)
                 if html is not None or log else "")
    page = write_page(html, page_html) if html is not None else None
    run_id = None
    if log:
        try:
            run_id = log_comparison(uri, comparison.names, _run_metrics(comparison), {
                "comparison.html": page_html, "comparison.json": _table_json(comparison)},
                studies[0].user_attrs.get(attrs.PARENT_RUN_ATTR))
        except Exception as error:  # the server is down, the store is read-only, ...
            kept = f"; the page is in {page}" if page else ""
            raise TrackingFailed(f"could not log the comparison run to {mask(uri)}: "
                                 f"{describe_error(error)}{kept}. Run again when MLflow "
                                 "answers, or pass --no-log") from error
    return CompareOutcome(comparison, page, run_id)


def _run_metrics(comparison: Comparison) -> dict[str, float]:
    """Each study's best value (``best_<metric>/<study>``), and the best trial's values of
    the other metrics (``<metric>_of_best/<study>``)."""
    return {metric_key(f"best_{m}" if i == 0 else f"{m}_of_best", s.name): s.best.values[i]
            for s in comparison.sides if s.best is not None
            for i, m in enumerate(comparison.metrics)}


def _table_json(comparison: Comparison) -> str:
    return json.dumps([{"row": label, **dict(zip(comparison.names, cells, strict=True))}
                       for label, cells in table_rows(comparison)], indent=1)


def render_comparison(comparison: Comparison, tracking_uri: str) -> str:
    """The page; each study links its parent MLflow run (its sweep's summary, report and
    trials), as the report links its trials (tuner.app.pages.run_links)."""
    url = tracking_url(tracking_uri)
    parents = [s.study.user_attrs.get(attrs.PARENT_RUN_ATTR) for s in comparison.sides]
    return render(TEMPLATE, names=comparison.names, metrics=comparison.metrics,
                  directions=comparison.directions, verdict=verdict(comparison),
                  completed=bool(leaders(comparison)),
                  links=[run_link(url, p) if p else None for p in parents],
                  local_ui=url == LOCAL_UI,
                  rows=table_rows(comparison), plots=comparison_plots(comparison))


def print_table(comparison: Comparison) -> None:
    """The comparison as a terminal table (rich), the leading study (or the tie) below."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    # Names and values are text, not rich markup: "nightly[r3]" or "[adam]" must show.
    table = Table(title=escape(f"{' vs '.join(comparison.names)}: {', '.join(comparison.metrics)}"
                               f" ({', '.join(comparison.directions)})"))
    table.add_column("")
    for name in comparison.names:
        table.add_column(escape(name), justify="right")
    for label, cells in table_rows(comparison):
        table.add_row(escape(label), *(escape(c) for c in cells))
    console = Console(width=max(100, 24 + 18 * len(comparison.names)))
    console.print(table)
    console.print(escape(verdict(comparison)))
