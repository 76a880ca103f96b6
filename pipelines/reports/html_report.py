"""The evaluation report: one self-contained HTML page with per-case metrics, classifier results and overlays."""

from __future__ import annotations

import html
import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from pipelines.evaluation.multiclass_metrics import PER_CLASS_METRICS, SUMMARY_METRICS
from pipelines.io.atomic import atomic_write

__all__ = ["CaseResult", "Column", "read_classifier_results", "render_report_html", "write_report_html"]

logger = logging.getLogger(__name__)

CLASSIFIER_METRICS = ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc")
PER_CLASS_COLUMNS = (*PER_CLASS_METRICS, "support")

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: right; }
th { background: #eee; text-align: center; }
td.case { text-align: left; }
tr.mean td { font-weight: bold; background: #f6f6f6; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; border: 1px solid #ccc; }
.note { color: #666; font-size: 0.85em; }
"""


@dataclass(frozen=True)
class Column:
    """One numeric column of the metrics table: ``group`` (``Dice``) over ``name`` (the class), ``digits`` shown."""

    group: str
    name: str
    digits: int = 3

    @property
    def key(self) -> str:
        """The key of this column in :attr:`CaseResult.values`."""
        return f"{self.group}/{self.name}"


@dataclass
class CaseResult:
    """One evaluated case: its name, its overlay PNG (relative to the report) and its values by column key."""

    name: str
    overlay: str | None = None
    values: dict[str, float] = field(default_factory=dict)


def _number(value: float | None, digits: int) -> str:
    if value is None or not math.isfinite(value):
        return ""
    return f"{value:.{digits}f}"


def _mean(values: Sequence[float | None]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def _anchor(index: int) -> str:
    return f"case-{index}"


def _metrics_table(columns: Sequence[Column], cases: Sequence[CaseResult]) -> list[str]:
    groups: list[tuple[str, int]] = []
    for column in columns:
        if groups and groups[-1][0] == column.group:
            groups[-1] = (column.group, groups[-1][1] + 1)
        else:
            groups.append((column.group, 1))
    esc = html.escape
    out = ['<table id="metrics">', "<thead>", '<tr><th rowspan="2">Case</th>']
    out += [f'<th colspan="{span}">{esc(group)}</th>' for group, span in groups]
    out += ["</tr>", "<tr>", *(f"<th>{esc(c.name)}</th>" for c in columns), "</tr>", "</thead>", "<tbody>"]
    for index, case in enumerate(cases):
        name = esc(case.name)
        cell = f'<a href="#{_anchor(index)}">{name}</a>' if case.overlay else name
        out.append(f'<tr><td class="case">{cell}</td>')
        out += [f"<td>{_number(case.values.get(c.key), c.digits)}</td>" for c in columns]
        out.append("</tr>")
    count = f"{len(cases)} case" + ("" if len(cases) == 1 else "s")
    out.append(f'<tr class="mean"><td class="case">mean of {count}</td>')
    out += [f"<td>{_number(_mean([case.values.get(c.key) for case in cases]), c.digits)}</td>" for c in columns]
    out += ["</tr>", "</tbody>", "</table>"]
    return out


def _multiclass_tables(metrics: Mapping) -> list[str]:
    """Per-class metrics and the K x K confusion matrix of a multi-class evaluation (``multiclass_report``)."""
    esc = html.escape
    names = [str(n) for n in metrics.get("class_names", [])]
    matrix = metrics.get("confusion_matrix")
    out = []
    per_class = metrics.get("per_class") or {}
    columns = [m for m in PER_CLASS_COLUMNS if any(m in (per_class.get(n) or {}) for n in names)]
    if names and columns:
        out.append('<table id="classifier-per-class">')
        out.append("<thead><tr><th>class</th>" + "".join(f"<th>{esc(c)}</th>" for c in columns) + "</tr></thead>")
        out.append("<tbody>")
        for name in names:
            values = per_class.get(name) or {}
            cells = "".join(f"<td>{_number(_float(values.get(c)), 0 if c == 'support' else 3)}</td>" for c in columns)
            out.append(f'<tr><td class="case">{esc(name)}</td>{cells}</tr>')
        out.append("</tbody></table>")
    if names and isinstance(matrix, list) and len(matrix) == len(names):
        out.append('<table id="confusion-matrix">')
        out.append("<thead><tr><th>true \\ predicted</th>" + "".join(f"<th>{esc(n)}</th>" for n in names))
        out.append("</tr></thead><tbody>")
        for name, row in zip(names, matrix, strict=True):
            out.append(f"<tr><th>{esc(name)}</th>" + "".join(f"<td>{int(v)}</td>" for v in row) + "</tr>")
        out.append("</tbody></table>")
    return out


def _classifier_section(classifier: Mapping, class_names: Sequence[str], title: str) -> list[str]:
    esc = html.escape
    out = [f"<h2>{esc(title)}</h2>"]
    if classifier.get("source"):
        source, written = esc(str(classifier["source"])), esc(str(classifier.get("written", "")))
        out.append(f'<p class="note">From {source}, written {written}.</p>')
    metrics = classifier.get("metrics", {})
    multiclass = "confusion_matrix" in metrics and "class_names" in metrics
    names = SUMMARY_METRICS if multiclass else CLASSIFIER_METRICS
    rows = [(name, metrics.get(name)) for name in names if name in metrics]
    if rows:
        out.append('<table id="classifier-metrics"><tbody>')
        out += [f"<tr><th>{esc(name)}</th><td>{_number(_float(value), 3)}</td></tr>" for name, value in rows]
        out.append("</tbody></table>")
    if multiclass:
        out += _multiclass_tables(metrics)
    elif all(k in metrics for k in ("tp", "fp", "tn", "fn")):
        negative, positive = (esc(str(n)) for n in (list(class_names) + ["negative", "positive"])[:2])
        out += [
            '<table id="confusion-matrix">',
            f"<thead><tr><th>true \\ predicted</th><th>{negative}</th><th>{positive}</th></tr></thead>",
            f"<tbody><tr><th>{negative}</th><td>{int(metrics['tn'])}</td><td>{int(metrics['fp'])}</td></tr>",
            f"<tr><th>{positive}</th><td>{int(metrics['fn'])}</td><td>{int(metrics['tp'])}</td></tr></tbody>",
            "</table>",
        ]
    return out


def _float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def render_report_html(
    title: str,
    columns: Sequence[Column],
    cases: Sequence[CaseResult],
    classifier: Mapping | None = None,
    classifier_class_names: Sequence[str] = ("negative", "positive"),
    notes: Sequence[str] = (),
    classifier_title: str = "Slice classifier",
) -> str:
    """The report page as a string: a metrics table (one row per case and a mean row), the slice classifier's
    metrics and confusion matrix when ``classifier`` is given, and each case's overlay strip.

    Every text is HTML-escaped and every link URL-quoted; the page loads nothing but the overlay PNGs, by
    relative paths. The mean row averages the finite values of each column (empty cells are skipped).

    Args:
        title: the page title.
        columns: the numeric columns, in order (columns of one ``group`` should be adjacent).
        cases: the evaluated cases.
        classifier: ``{"metrics": <classification_metrics.json>, "source": path, "written": time}`` or None; a
            binary evaluation (``tp``, ``fp``...) or a multi-class one (``class_names``, ``per_class``,
            ``confusion_matrix``, macro averages).
        classifier_class_names: negative and positive class names of a binary classifier.
        notes: lines shown under the title (how the values were computed).
        classifier_title: heading of the classifier's section.
    """
    esc = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{esc(title)}</h1>",
        *(f'<p class="note">{esc(note)}</p>' for note in notes),
        "<h2>Segmentation metrics</h2>",
        *_metrics_table(columns, cases),
    ]
    if classifier:
        out += _classifier_section(classifier, classifier_class_names, classifier_title)
    with_overlay = [(index, case) for index, case in enumerate(cases) if case.overlay]
    if with_overlay:
        out.append("<h2>Overlays</h2>")
    for index, case in with_overlay:
        src = esc(quote(case.overlay))
        out += [
            f'<figure id="{_anchor(index)}">',
            f'<a href="{src}"><img src="{src}" alt="{esc(case.name)}: image, ground truth and prediction"></a>',
            f"<figcaption>{esc(case.name)}</figcaption>",
            "</figure>",
        ]
    out += ["</body>", "</html>", ""]
    return "\n".join(out)


def write_report_html(path: str | os.PathLike, page: str) -> Path:
    """Write ``page`` to ``path`` atomically, as UTF-8."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))


def read_classifier_results(folder: str | os.PathLike | None) -> dict | None:
    """The slice classifier's evaluation in ``folder`` (``classification_metrics.json``), or None when absent.

    Returns ``{"metrics": ..., "source": path, "written": modification time}``; an unreadable file is logged
    and skipped (the report is written without it).
    """
    if not folder:
        return None
    path = Path(folder) / "classification_metrics.json"
    if not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        logger.warning("%s: cannot read the classifier metrics (%s); the report leaves them out", path, err)
        return None
    if not isinstance(metrics, dict):
        logger.warning("%s: not a JSON object; the report leaves the classifier metrics out", path)
        return None
    written = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(path.stat().st_mtime))
    return {"metrics": metrics, "source": str(path), "written": written}
