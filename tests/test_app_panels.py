"""URL state, tooltip and detail-panel builders (pure functions)."""

from __future__ import annotations

import json

import pytest
from dash import html

from app_helpers import EVIL, make_run
from featscope.app import panels as P
from featscope.store import load

METHODS = ["gradcam", "gradcam++", "scorecam"]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return load(make_run(tmp_path_factory.mktemp("panels"), n=12)).table


@pytest.mark.parametrize("raw,expected", [
    ("0", 0), ("11", 11), (7, 7),
    ("12", None), ("-1", None), ("1.0", None), ("01", None), (" 1", None), ("1 ", None),
    ("+1", None), ("1e3", None), ("../../etc/passwd", None), ("%2e%2e%2f", None),
    ("99999999999999999999", None), ("", None), (None, None), (True, None), (-3, None),
    (1.0, None), ("١", None),  # an Arabic-Indic digit: int() would accept it
])
def test_parse_index_accepts_only_canonical_ids_in_range(raw, expected):
    assert P.parse_index(raw, 12) == expected


def test_parse_url_round_trips_and_drops_garbage():
    assert P.parse_url("?id=5", 12, 3, METHODS) == P.UrlState(5, None, None)
    assert P.parse_url("?id=5&cls=2&method=gradcam%2B%2B", 12, 3, METHODS) == \
        P.UrlState(5, 2, "gradcam++")
    assert P.parse_url("?id=5&cls=9&method=evil", 12, 3, METHODS) == P.UrlState(5, None, None)
    assert P.parse_url("?id=50", 12, 3, METHODS) == P.UrlState()
    assert P.parse_url("?id=<script>", 12, 3, METHODS) == P.UrlState()
    assert P.parse_url("", 12, 3, METHODS) == P.UrlState()
    assert P.parse_url(None, 12, 3, METHODS) == P.UrlState()
    # While the CAM module loads, any well-formed method key passes (checked later).
    assert P.parse_url("?id=1&method=layercam", 12, 3, None).method == "layercam"
    assert P.parse_url("?id=1&method=<b>", 12, 3, None).method is None

    url = P.format_url(5, 2, "gradcam++", default_target=1)
    assert url == "?id=5&cls=2&method=gradcam%2B%2B"
    assert P.parse_url(url, 12, 3, METHODS) == P.UrlState(5, 2, "gradcam++")
    assert P.format_url(5, 1, "gradcam", default_target=1) == "?id=5"  # defaults left out
    assert P.format_url(None) == ""


def texts(component) -> list[str]:
    """Every string child in a component tree."""
    out = []

    def walk(c):
        if isinstance(c, str):
            out.append(c)
        elif isinstance(c, (list, tuple)):
            for x in c:
                walk(x)
        elif c is not None and hasattr(c, "children"):
            walk(c.children)

    walk(component)
    return out


def test_image_info_from_table(table):
    info = P.ImageInfo.from_table(table, 1)
    assert info.name.startswith(EVIL)
    assert info.label == "dog" and info.pred in ("dog", "cat", EVIL)
    assert len(info.top5) == 3 and abs(sum(p for _, p in info.top5) - 1) < 1e-5
    assert info.width > 0 and info.height > 0
    assert P.ImageInfo.from_table(table, 0).split is None  # pandas NA becomes None


def test_tooltip_shows_thumbnail_name_labels_and_confidence(table):
    info = P.ImageInfo.from_table(table, 1)
    kids = P.tooltip_children(info, "/thumb/1?v=x")
    strings = texts(kids)
    assert info.name in strings and "dog" in strings and info.pred in strings
    assert any(s.strip().endswith("%") for s in strings)
    img = kids[0].children[0]
    assert isinstance(img, html.Img) and img.src == "/thumb/1?v=x"
    # HTML in the file name is a text child, never markup.
    dumped = json.dumps([k.to_plotly_json() for k in kids], default=lambda o: o.to_plotly_json())
    assert "dangerously_allow_html" not in dumped
    assert strings[0] == info.name and EVIL in strings[0]


def test_hover_and_click_targets():
    bbox = {"x0": 1, "x1": 2, "y0": 3, "y1": 4}
    assert P.hover_target({"id": 3, "bbox": bbox}, 12) == (3, bbox)
    assert P.hover_target({"id": 30, "bbox": bbox}, 12) is None
    assert P.hover_target({"id": 3, "bbox": None}, 12) is None
    assert P.hover_target(None, 12) is None
    assert P.click_target({"id": 4}, 12) == 4
    assert P.click_target({"id": "4; drop"}, 12) is None


def test_detail_header_and_top5(table):
    info = P.ImageInfo.from_table(table, 4)
    head = P.detail_header(info)
    strings = texts(head)
    assert info.name in strings and info.path in strings
    assert any(f"{info.width} × {info.height} px" in s for s in strings)
    rows = P.top5_children(info, ["cat", "dog", EVIL], target=info.pred_index)
    assert len(rows) == 3
    assert rows[0].id == {"type": "top5", "index": ["cat", "dog", EVIL].index(info.top5[0][0])}
    assert "active" in rows[0].className  # the predicted class is explained first
    assert rows[0].children[0].style["width"].endswith("%")
    # A class name missing from the model's classes cannot be chosen.
    assert P.top5_children(info, ["x"], None)[0].disabled is True


def test_texts_for_the_cam_view():
    assert P.fmt_seconds(0.2) == "200 ms" and P.fmt_seconds(42) == "42 s"
    assert P.fmt_seconds(600) == "10 min" and P.fmt_seconds(None) == "an unknown time"
    text = P.slow_prompt_text("Score-CAM", 95.0, "cpu")
    assert "Score-CAM" in text and "1 min 35 s" in text and "cpu" in text
    assert "minutes" in P.slow_prompt_text("Score-CAM", None, "cpu")
    assert "cached" in P.cam_status_text("Grad-CAM", "cat", 0, 0.1, True)
    assert "computed in 100 ms" in P.cam_status_text("Grad-CAM", "cat", 0, 0.1, False)
    assert P.job_progress_text("running", 64, 1280, 3.0).startswith("64 / 1280")
    options = P.method_options({"gradcam": "Grad-CAM", "scorecam": "Score-CAM"}, {"scorecam"})
    assert options == [{"label": "Grad-CAM", "value": "gradcam"},
                       {"label": "Score-CAM (slow)", "value": "scorecam"}]
