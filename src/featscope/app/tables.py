"""The suspects table and the confusion matrix of the app: data (pure) and components.

Both follow the filters and stay small in the browser however large the run: the suspects
table is ranked and paged on the server (one page of rows is sent), the confusion matrix
shows only the classes that occur (at most ``MAX_CONFUSION_CLASSES`` of them). The same
tables come from Python as ``run.suspects()`` and ``run.confusion()``.
"""

from __future__ import annotations

import html as htmllib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from dash import html

from ..scores import SCORE_COLUMNS
from .figures import MapData
from .panels import pct

# --------------------------------------------------------------------------------------
# Suspects

# Column id -> (header, name in sentences, tooltip). Scores rank highest first by default.
SUSPECT_COLUMNS: dict[str, tuple[str, str, str]] = {
    "name": ("File", "file name", "file name"),
    "label": ("True", "true label", "true label"),
    "pred": ("Predicted", "prediction", "predicted label"),
    "confidence": ("Conf.", "confidence", "probability of the predicted class"),
    "score_neighbor_disagreement": ("Disagree", "neighbour disagreement",
                                    SCORE_COLUMNS["score_neighbor_disagreement"]),
    "score_confidently_wrong": ("Conf. wrong", "confidently wrong",
                                SCORE_COLUMNS["score_confidently_wrong"]),
    "score_low_confidence": ("Unsure", "low confidence", SCORE_COLUMNS["score_low_confidence"]),
    "score_outlier": ("Outlier", "outlier score", SCORE_COLUMNS["score_outlier"]),
}
DEFAULT_SORT = "score_neighbor_disagreement"
SUSPECTS_PAGE_SIZE = 12


def suspect_columns(table: pd.DataFrame) -> list[str]:
    """The suspects table's columns that this run has (older runs lack the scores)."""
    return [c for c in SUSPECT_COLUMNS if c in table.columns]


def default_sort(table: pd.DataFrame) -> dict[str, Any]:
    cols = suspect_columns(table)
    by = DEFAULT_SORT if DEFAULT_SORT in cols else next(
        (c for c in cols if c.startswith("score_")), "confidence")
    return {"by": by, "desc": by.startswith("score_")}


def next_sort(current: dict[str, Any] | None, clicked: str, table: pd.DataFrame) -> dict[str, Any]:
    """Clicking a header sorts by it (scores: highest first); clicking it again flips."""
    if clicked not in suspect_columns(table):
        return current or default_sort(table)
    if current and current.get("by") == clicked:
        return {"by": clicked, "desc": not current.get("desc", True)}
    return {"by": clicked, "desc": clicked.startswith("score_")}


@dataclass(frozen=True)
class SuspectsPage:
    rows: pd.DataFrame  # this page's rows: "id" + suspect_columns
    page: int
    n_pages: int
    total: int
    start: int
    by: str
    desc: bool

    def text(self) -> str:
        if not self.total:
            return "no images"
        return f"{self.start + 1:,}–{self.start + len(self.rows):,} of {self.total:,}"


def rank(table: pd.DataFrame, mask: np.ndarray | None, by: str, desc: bool) -> np.ndarray:
    """Ids of the images in ``mask`` ordered by column ``by`` (missing values last; ties by
    id, so paging is stable)."""
    ids = np.arange(len(table)) if mask is None else np.flatnonzero(mask)
    col = table[by]
    if pd.api.types.is_numeric_dtype(col):
        values = col.to_numpy(np.float64, na_value=np.nan)[ids]
        missing = np.isnan(values)
        key = np.where(missing, 0.0, -values if desc else values)
        order = np.lexsort((ids, key, missing))
    else:
        values = col.astype(object).to_numpy()[ids]
        s = pd.Series(values, index=ids)
        order_index = s.sort_values(ascending=not desc, na_position="last", kind="stable").index
        return order_index.to_numpy(dtype=np.int64)
    return ids[order].astype(np.int64)


def suspects_page(
    table: pd.DataFrame,
    mask: np.ndarray | None = None,
    by: str | None = None,
    desc: bool = True,
    page: int | None = 0,
    page_size: int = SUSPECTS_PAGE_SIZE,
) -> SuspectsPage:
    """One page of the images ranked by a suspect score (or any table column), among those
    in ``mask`` (the filters). Only this page's rows are built, so 100k images cost a sort."""
    cols = suspect_columns(table)
    if by not in cols:
        sort = default_sort(table)
        by, desc = sort["by"], sort["desc"]
    ids = rank(table, mask, by, desc)
    total = len(ids)
    page_size = max(1, int(page_size))
    n_pages = max(1, math.ceil(total / page_size))
    page = min(max(0, int(page or 0)), n_pages - 1)
    start = page * page_size
    chosen = ids[start:start + page_size]
    rows = table.iloc[chosen][cols].copy()
    rows.insert(0, "id", chosen)
    return SuspectsPage(rows.reset_index(drop=True), page, n_pages, total, start, by, bool(desc))


def _cell(col: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "–"
    if col == "confidence":
        return pct(float(value))
    if col.startswith("score_"):
        return f"{float(value):.2f}"
    return str(value)


def suspects_header(cols: list[str], by: str, desc: bool) -> html.Tr:
    """Sortable header: each column name is a button; the sorted one shows its direction."""
    cells = []
    for col in cols:
        title, _, tip = SUSPECT_COLUMNS[col]
        arrow = (" ▼" if desc else " ▲") if col == by else ""
        cells.append(html.Th(
            html.Button(title + arrow, id={"type": "sus-sort", "index": col},
                        className="th-btn" + (" sorted" if col == by else ""), title=tip,
                        n_clicks=0),
            className=f"col-{col}",
        ))
    return html.Tr(cells)


def suspects_rows(page: SuspectsPage, current: int | None = None) -> list[html.Tr]:
    """One clickable row per image (text cells only: names are never markup). Misclassified
    rows are marked; ``current`` (the open image) is highlighted."""
    cols = [c for c in page.rows.columns if c != "id"]
    out = []
    for rec in page.rows.to_dict("records"):
        image_id = int(rec["id"])
        cls = "sus-row"
        label, pred = rec.get("label"), rec.get("pred")
        if isinstance(label, str) and label != pred:
            cls += " wrong"
        if current is not None and image_id == current:
            cls += " current"
        cells = [html.Td(_cell(c, rec.get(c)), className=f"col-{c}",
                         title=str(rec.get(c)) if c == "name" else None) for c in cols]
        out.append(html.Tr(cells, id={"type": "sus-row", "index": image_id}, className=cls,
                           n_clicks=0, title=f"id {image_id}: open it and select it on the map"))
    return out


# --------------------------------------------------------------------------------------
# Confusion matrix

MAX_CONFUSION_CLASSES = 40
ANNOTATE_UP_TO = 20  # write the counts into the cells for matrices up to this size


@dataclass(frozen=True)
class ConfusionView:
    counts: pd.DataFrame  # true (rows) x predicted (columns), counts
    shown_of: int  # how many classes occurred in all (before the cap)

    @property
    def rows(self) -> list[str]:
        return [str(c) for c in self.counts.index]

    @property
    def cols(self) -> list[str]:
        return [str(c) for c in self.counts.columns]

    def note(self) -> str:
        n = len(set(self.rows) | set(self.cols))
        total = int(self.counts.to_numpy().sum())
        errors = total - int(sum(self.counts.at[c, c] for c in self.rows if c in self.cols))
        text = f"{total:,} labelled images · {errors:,} off the diagonal"
        if self.shown_of > n:
            text += f" · the {n} most confused of {self.shown_of} classes"
        return text


def confusion_counts(data: MapData, mask: np.ndarray | None = None,
                     class_names: Sequence[str] = ()) -> pd.DataFrame:
    """True x predicted counts over the labelled images in ``mask``, for the classes that
    occur, ordered as ``featscope.scores.confusion`` (``run.confusion()``) orders them. One
    bincount over class codes: milliseconds at 100k images, even with 1000 classes."""
    keep = data.label_code >= 0
    if mask is not None:
        keep &= mask
    v = len(data.vocab)
    flat = data.label_code[keep].astype(np.int64) * v + data.pred_code[keep]
    counts = np.bincount(flat, minlength=v * v).reshape(v, v)
    model = set(class_names)
    rows = sorted(np.flatnonzero(counts.sum(axis=1)).tolist(),
                  key=lambda i: (data.vocab[i] not in model, data.vocab[i]))
    row_set = set(rows)
    cols = sorted(set(np.flatnonzero(counts.sum(axis=0)).tolist()) | row_set,
                  key=lambda j: (j not in row_set, data.vocab[j]))
    return pd.DataFrame(counts[np.ix_(rows, cols)], index=[data.vocab[i] for i in rows],
                        columns=[data.vocab[j] for j in cols]).rename_axis(
        index="true", columns="predicted")


def confusion_view(data: MapData, mask: np.ndarray | None = None,
                   class_names: Sequence[str] = (),
                   max_classes: int = MAX_CONFUSION_CLASSES) -> ConfusionView:
    """The matrix the app shows: the classes present; above ``max_classes`` the ones with
    the most errors (as true or predicted class)."""
    counts = confusion_counts(data, mask, class_names)
    classes = list(dict.fromkeys([*counts.index, *counts.columns]))
    if len(classes) <= max_classes:
        return ConfusionView(counts, len(classes))
    full = counts.reindex(index=classes, columns=classes, fill_value=0).to_numpy()
    off = full - np.diag(np.diag(full))
    score = off.sum(axis=0) + off.sum(axis=1)
    size = full.sum(axis=0) + full.sum(axis=1)
    order = np.lexsort((-size, -score))[:max_classes]
    keep = {classes[i] for i in order}
    rows = [c for c in counts.index if c in keep]  # in the matrix's own order
    cols = [c for c in counts.columns if c in keep]
    return ConfusionView(counts.loc[rows, cols], len(classes))


def confusion_figure(view: ConfusionView) -> dict[str, Any]:
    """A plotly heatmap: colour = share of the true class (row), text = counts. Axes are
    numeric (tick labels carry the names) so that a click reports indices, whatever the
    class names; names are HTML-escaped because plotly renders tags in labels."""
    counts = view.counts.to_numpy()
    rows, cols = view.rows, view.cols
    row_sum = np.maximum(counts.sum(axis=1, keepdims=True), 1)
    share = counts / row_sum
    esc_rows = [htmllib.escape(c) for c in rows]
    esc_cols = [htmllib.escape(c) for c in cols]
    k = max(len(rows), len(cols))
    annotate = k <= ANNOTATE_UP_TO
    custom = [[[esc_rows[i], esc_cols[j], int(counts[i, j])] for j in range(len(cols))]
              for i in range(len(rows))]
    trace: dict[str, Any] = {
        "type": "heatmap",
        "x": list(range(len(cols))),
        "y": list(range(len(rows))),
        "z": np.round(share, 4).tolist(),
        "zmin": 0,
        "zmax": 1,
        "customdata": custom,
        "colorscale": [[0, "#f8fafc"], [0.02, "#e8effd"], [0.3, "#93b4f3"], [1, "#1d4ed8"]],
        "showscale": False,
        "xgap": 1,
        "ygap": 1,
        "hovertemplate": ("true <b>%{customdata[0]}</b><br>predicted <b>%{customdata[1]}</b>"
                          "<br>%{customdata[2]} images (%{z:.0%} of the true class)"
                          "<br>click to select them<extra></extra>"),
    }
    if annotate:
        trace["text"] = [[str(int(c)) if c else "" for c in row] for row in counts]
        trace["texttemplate"] = "%{text}"
        trace["textfont"] = {"size": 11}
    tick = {"tickmode": "array", "showgrid": False, "zeroline": False, "ticks": "",
            "tickfont": {"size": 10 if k > 12 else 11}, "automargin": True}
    return {
        "data": [trace],
        "layout": {
            "margin": {"l": 8, "r": 8, "t": 8, "b": 8},
            "paper_bgcolor": "white",
            "plot_bgcolor": "white",
            "xaxis": {**tick, "tickvals": list(range(len(cols))), "ticktext": esc_cols,
                      "title": {"text": "predicted", "font": {"size": 11}}, "side": "bottom",
                      "tickangle": -40 if k > 6 else 0, "fixedrange": True},
            "yaxis": {**tick, "tickvals": list(range(len(rows))), "ticktext": esc_rows,
                      "title": {"text": "true", "font": {"size": 11}}, "autorange": "reversed",
                      "fixedrange": True},
            "dragmode": False,
            "hovermode": "closest",
            "font": {"family": "Inter, system-ui, sans-serif", "size": 11, "color": "#374151"},
        },
    }


def clicked_cell(click: dict | None, axes: dict | None) -> tuple[str, str] | None:
    """(true, predicted) class names of a clicked heatmap cell, from the click's indices
    and the names the figure was drawn with."""
    if not click or not axes or not click.get("points"):
        return None
    point = click["points"][0]
    rows, cols = axes.get("rows") or [], axes.get("cols") or []
    i, j = point.get("y"), point.get("x")
    if not isinstance(i, int) or not isinstance(j, int) or isinstance(i, bool):
        return None
    if not (0 <= i < len(rows) and 0 <= j < len(cols)):
        return None
    return rows[i], cols[j]
