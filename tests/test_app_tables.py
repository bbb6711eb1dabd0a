"""The suspects table and the confusion matrix (pure functions, no server)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from app_helpers import EVIL, add_neighbours_and_scores, make_big_run, make_run
from featscope.app import figures as F
from featscope.app import tables as T
from featscope.scores import confusion, suspects
from featscope.store import load


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return load(add_neighbours_and_scores(make_run(tmp_path_factory.mktemp("tab"), n=45)))


@pytest.fixture(scope="module")
def data(run):
    return F.map_data(run.table, run.class_names)


def test_suspects_pages_are_the_run_ranking_in_slices(run):
    t = run.table
    full = suspects(t, "score_neighbor_disagreement")  # featscope.scores: the Python API
    seen = []
    page = T.suspects_page(t, None, "score_neighbor_disagreement", True, 0, page_size=10)
    assert page.total == 45 and page.n_pages == 5 and len(page.rows) == 10
    for p in range(page.n_pages):
        rows = T.suspects_page(t, None, "score_neighbor_disagreement", True, p, 10).rows
        seen += rows["id"].tolist()
    assert seen == full["id"].tolist()  # same order (ties by id), nothing lost or repeated
    scores = full["score_neighbor_disagreement"].to_numpy()
    assert np.all(np.diff(scores) <= 0)
    # Each score is its own column; the page never holds more than a page of rows.
    assert {"score_neighbor_disagreement", "score_confidently_wrong", "score_low_confidence",
            "score_outlier"} <= set(page.rows.columns)
    assert page.text() == "1–10 of 45"
    last = T.suspects_page(t, None, "score_outlier", False, 99, page_size=10)
    assert last.page == 4 and len(last.rows) == 5 and last.text() == "41–45 of 45"
    assert np.all(np.diff(last.rows["score_outlier"].to_numpy()) >= 0)  # ascending


def test_suspects_follow_filters_and_sort_any_column(run, data):
    t = run.table
    wrong = F.visible_mask(data, F.ViewState(mode="label", show="wrong"))
    page = T.suspects_page(t, wrong, "score_confidently_wrong", True, 0, page_size=50)
    assert sorted(page.rows["id"]) == np.flatnonzero(wrong).tolist()
    assert page.rows["score_confidently_wrong"].is_monotonic_decreasing
    by_name = T.suspects_page(t, None, "name", False, 0, page_size=50).rows["name"].tolist()
    assert by_name == sorted(t["name"])
    # Missing values (unlabelled images have no disagreement score) rank last either way.
    t2 = t.copy()
    t2.loc[[3, 8], "score_neighbor_disagreement"] = np.nan
    for desc in (True, False):
        ids = T.suspects_page(t2, None, "score_neighbor_disagreement", desc, 0, 50).rows["id"]
        assert ids.tolist()[-2:] == [3, 8]
    # An unknown column falls back to the default ranking.
    assert T.suspects_page(t, None, "path; drop", True, 0).by == T.DEFAULT_SORT


def test_header_clicks_sort_and_flip(run):
    t = run.table
    s = T.default_sort(t)
    assert s == {"by": "score_neighbor_disagreement", "desc": True}
    s = T.next_sort(s, "confidence", t)
    assert s == {"by": "confidence", "desc": False}  # least confident first
    assert T.next_sort(s, "confidence", t) == {"by": "confidence", "desc": True}
    assert T.next_sort(s, "nope", t) == s


def test_old_runs_without_scores_still_get_a_table(tmp_path):
    t = load(make_run(tmp_path, n=12)).table
    assert T.default_sort(t) == {"by": "confidence", "desc": False}
    page = T.suspects_page(t)
    assert list(page.rows.columns) == ["id", "name", "label", "pred", "confidence"]
    assert page.rows["confidence"].is_monotonic_increasing


def test_suspect_rows_are_text_and_clickable(run):
    page = T.suspects_page(run.table, None, "name", False, 0, page_size=45)
    rows = T.suspects_rows(page, current=1)
    assert [r.id for r in rows] == [{"type": "sus-row", "index": int(i)}
                                    for i in page.rows["id"]]
    evil = next(r for r in rows if r.id["index"] == 1)
    assert evil.children[0].children == run.table["name"].iat[1]  # text, escaped by Dash
    assert EVIL in evil.children[0].children
    assert "current" in evil.className
    wrong = ~run.table["correct"].to_numpy(dtype=bool)
    for r in rows:
        assert ("wrong" in r.className) == bool(wrong[r.id["index"]])
    dumped = json.dumps([r.to_plotly_json() for r in rows], default=lambda o: o.to_plotly_json())
    assert "dangerously_allow_html" not in dumped
    head = T.suspects_header(T.suspect_columns(run.table), "confidence", True)
    assert [c.children.id["index"] for c in head.children] == T.suspect_columns(run.table)
    assert next(c.children for c in head.children
                if c.children.id["index"] == "confidence").children.endswith("▼")


def test_confusion_counts_match_the_run_api(run, data):
    counts = T.confusion_counts(data, None, run.class_names)
    expected = confusion(run.table, run.class_names)
    pd.testing.assert_frame_equal(counts, expected, check_names=False, check_dtype=False)
    mask = F.visible_mask(data, F.ViewState(mode="label", show="wrong"))
    off = T.confusion_counts(data, mask)
    assert int(np.trace(off.reindex(index=off.columns, fill_value=0).to_numpy())) == 0
    assert int(off.to_numpy().sum()) == int(mask.sum())


def test_confusion_shows_only_present_classes_and_caps_many(tmp_path):
    big = load(make_big_run(tmp_path, n=3000, n_classes=60))
    data = F.map_data(big.table, big.class_names)
    # Only 5 classes in view: a 5 x 5 matrix, not 60 x 60.
    few = F.ViewState.from_inputs(data, "label", [], "all", None,
                                  {"labels": list(range(5)), "preds": list(range(5))})
    cv = T.confusion_view(data, F.visible_mask(data, few))
    assert cv.rows == cv.cols == [f"class_{i}" for i in range(5)]
    pd.testing.assert_frame_equal(  # the same numbers as the Python API on those images
        cv.counts, confusion(big.table[F.visible_mask(data, few)], big.class_names),
        check_names=False, check_dtype=False)
    cv = T.confusion_view(data, None, big.class_names, max_classes=12)
    assert len(cv.rows) <= 12 and len(cv.cols) <= 12 and cv.shown_of == 60
    assert "most confused of 60 classes" in cv.note()
    # The kept classes are those with the most errors.
    full = T.confusion_counts(data, None, big.class_names)
    m = full.to_numpy()
    errors = pd.Series(m.sum(0) + m.sum(1) - 2 * np.diag(m), index=full.index)
    assert errors[cv.rows].min() >= errors.sort_values().iloc[-12]


def test_confusion_figure_escapes_names_and_clicks_map_to_names(run, data):
    cv = T.confusion_view(data)
    fig = T.confusion_figure(cv)
    trace = fig["data"][0]
    assert trace["type"] == "heatmap"
    assert EVIL not in json.dumps(fig)  # plotly renders tags in labels: escaped
    assert "&lt;img src=x onerror=alert(1)&gt;" in fig["layout"]["yaxis"]["ticktext"]
    assert trace["text"][0][0] == str(int(cv.counts.iat[0, 0]))
    axes = {"rows": cv.rows, "cols": cv.cols}
    i, j = cv.rows.index(EVIL), cv.cols.index("cat")
    assert T.clicked_cell({"points": [{"x": j, "y": i}]}, axes) == (EVIL, "cat")
    assert T.clicked_cell({"points": [{"x": 99, "y": 0}]}, axes) is None
    assert T.clicked_cell({"points": [{"x": "0", "y": 0}]}, axes) is None
    assert T.clicked_cell(None, axes) is None
