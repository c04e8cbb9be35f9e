"""``tuner report``: a study's report page, written at any time (also while it runs).

Reading only: the study is opened from its storage and nothing in it changes, so the
command is safe beside a running sweep.
"""

from __future__ import annotations

from pathlib import Path

from tuner.app.lookup import load_study
from tuner.app.pages.html import write_page
from tuner.app.pages.study_page import render_study_report
from tuner.config.compose import Composed


def default_report_path(study_name: str) -> Path:
    return Path(f"{study_name}-report.html")


def write_report(composed: Composed, out: Path | None) -> Path:
    """Render the composed study's report into ``out`` (default STUDY-report.html here)."""
    study = load_study(composed)  # an unknown study is refused here, listing those there
    html = render_study_report(study, tracking_uri=composed.cfg.tracking.tracking_uri)
    return write_page(out or default_report_path(study.study_name), html)
