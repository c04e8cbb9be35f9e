"""One self-contained HTML page: a template from ``dashboards/``, plotly.js inside it once.

plotly.min.js is 4.8 MB, which alone nearly fills the 5 MB a report may take, so the page
carries it gzip-compressed and base64-encoded (about 2 MB) and unpacks it in the browser
with ``DecompressionStream`` (Chrome 80, Firefox 113, Safari 16.4 and newer). The page
needs no network: opened from disk, from an e-mail, or inside MLflow's artifact viewer.
Each figure is a JSON spec that the page hands to ``Plotly.newPlot``.
"""

from __future__ import annotations

import base64
import functools
import gzip
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tuner.dashboards

TEMPLATES = Path(tuner.dashboards.__file__).parent
SIGNIFICANT_DIGITS = 5  # floats in the figures' data: more is noise, and megabytes
DEFAULT_HEIGHT = 460  # pixels of a figure's box when its layout sets no height


@dataclass(frozen=True)
class Plot:
    """One figure of a page: its plotly spec as JSON, or why it was not drawn."""

    title: str
    spec: str = ""  # {"data": [...], "layout": {...}}
    note: str = ""  # shown under the figure, or instead of it when spec is empty
    height: int = 0  # pixels of the figure's box (its layout's own height, if it sets one)
    # pixels the figure needs at least (its layout's width, if it sets one): a narrower
    # page scrolls it sideways rather than squeezing its labels together
    min_width: int = 0


def plot_of(title: str, figure: Any) -> Plot:
    """A Plot from a plotly Figure, its floats rounded so that the page stays small."""
    spec = _rounded(json.loads(figure.to_json()))
    # A width is a minimum here, not a fixed size: the figure still fills a wider page.
    min_width = int(spec.get("layout", {}).pop("width", 0) or 0)
    text = json.dumps({"data": spec.get("data", []), "layout": spec.get("layout", {})},
                      separators=(",", ":"))
    # The spec sits in a <script> element: "</script" or "<!--" inside a string (a
    # study's parameter value, say) would end or change it. JSON reads \u003c as "<".
    layout_height = spec.get("layout", {}).get("height")
    return Plot(title, text.replace("<", "\\u003c"),
                height=int(layout_height) if layout_height else DEFAULT_HEIGHT,
                min_width=min_width)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return value if not math.isfinite(value) or value == 0 else float(
            f"{value:.{SIGNIFICANT_DIGITS}g}")
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


@functools.cache
def plotly_bundle() -> str:
    """plotly.js, gzip-compressed and base64-encoded, as the page's loader expects it."""
    from plotly.offline import get_plotlyjs

    return base64.b64encode(gzip.compress(get_plotlyjs().encode(), 9)).decode()


def duration(seconds: float) -> str:
    """A length of time as a person reads it: ``12.3 s``, ``4 min 05 s``."""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{seconds:.1f} s"


def render(template: str, **context: Any) -> str:
    """The page ``template`` (a file in dashboards/) with ``context``; plotly.js included
    when the context has plots."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(TEMPLATES),
                      autoescape=select_autoescape(["html", "j2"]))
    plots = [p for p in context.get("plots", []) if p.spec]
    return env.get_template(template).render(
        plotly=plotly_bundle() if plots else "",
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), **context)


def write_page(path: Path, html: str) -> Path:
    """Write ``html`` to ``path`` whole: a reader never sees half a page."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(html, encoding="utf-8")
    partial.replace(path)
    return path
