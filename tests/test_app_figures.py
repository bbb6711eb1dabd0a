"""The map figure, colour modes, filters and Patch builders (pure functions, no server)."""

from __future__ import annotations

import base64
import json
import time

import numpy as np
import pandas as pd
import pytest

from app_helpers import EVIL, make_run
from featscope.app import figures as F
from featscope.store import load


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return load(make_run(tmp_path_factory.mktemp("figs"), n=24))


@pytest.fixture(scope="module")
def data(run):
    return F.map_data(run.table, run.class_names)


def plotly_valid(fig: dict) -> bool:
    """plotly.py accepts the dict as a figure (typed arrays and all)."""
    import plotly.graph_objects as go

    go.Figure(fig)
    return True


def decode(spec: dict) -> np.ndarray:
    """plotly's typed-array spec back to numpy."""
    dtypes = {"f4": np.float32, "f8": np.float64, "u1": np.uint8, "u2": np.uint16,
              "u4": np.uint32, "i1": np.int8, "i2": np.int16, "i4": np.int32}
    return np.frombuffer(base64.b64decode(spec["bdata"]), dtype=dtypes[spec["dtype"]])


def fig_json(fig) -> dict:
    """What goes over the wire (the figure dict is already JSON-ready)."""
    return json.loads(json.dumps(fig))


def test_figure_is_one_scattergl_of_every_point_as_typed_arrays(run, data):
    fig = F.build_figure(data)
    js = fig_json(fig)
    main = js["data"][0]
    assert main["type"] == "scattergl"
    assert main["hoverinfo"] == "none"  # tooltip comes from dcc.Tooltip, not baked-in text
    assert "text" not in main and "hovertext" not in main and "hovertemplate" not in main
    for key in ("x", "y", "customdata"):
        assert set(main[key]) == {"dtype", "bdata"}, key  # base64, not a JSON list
    assert main["x"]["dtype"] == "f4" and main["y"]["dtype"] == "f4"
    np.testing.assert_array_equal(decode(main["x"]), run.table["x"].to_numpy(np.float32))
    np.testing.assert_array_equal(decode(main["y"]), run.table["y"].to_numpy(np.float32))
    np.testing.assert_array_equal(decode(main["customdata"]), np.arange(len(run.table)))
    assert len(decode(main["x"])) == len(run.table) == 24
    assert set(main["marker"]["color"]) == {"dtype", "bdata"}
    # The selected-point ring is a second, empty trace until something is clicked.
    assert js["data"][1]["type"] == "scattergl" and js["data"][1]["x"] == []


def test_axes_leave_a_margin_around_the_points(data):
    layout = F.build_figure(data)["layout"]
    lo, hi = layout["xaxis"]["range"]
    assert lo < data.x.min() and hi > data.x.max()
    assert layout["uirevision"]  # zoom and pan survive Patches
    assert F.padded_range(np.array([np.nan], np.float32)) is None
    assert F.padded_range(np.array([2, 2], np.float32)) == [1.0, 3.0]


def test_id_dtype_is_the_smallest_that_fits():
    assert F.id_dtype(256) == np.uint8
    assert F.id_dtype(257) == np.uint16
    assert F.id_dtype(70_000) == np.uint32


def test_payload_is_compact_for_many_points():
    n = 100_000
    rng = np.random.default_rng(0)
    classes = [f"c{i}" for i in range(10)]
    lab = rng.integers(0, 10, n)
    pred = np.where(rng.random(n) < 0.2, rng.integers(0, 10, n), lab)
    table = pd.DataFrame({
        "label": [classes[i] for i in lab], "pred": [classes[i] for i in pred],
        "confidence": rng.random(n).astype(np.float32), "correct": lab == pred,
        "x": rng.normal(size=n).astype(np.float32), "y": rng.normal(size=n).astype(np.float32),
    })
    t0 = time.perf_counter()
    fig = F.build_figure(F.map_data(table, classes))
    assert time.perf_counter() - t0 < 5  # no per-element validation
    assert plotly_valid(fig)
    size = len(json.dumps(fig, separators=(",", ":")))
    assert size / n <= 40, f"{size / n:.1f} bytes per point"


def codes_to_colors(fig_or_patch_marker: dict, codes: np.ndarray) -> list[str]:
    """The colour each point gets from its code through the step colour scale."""
    scale = fig_or_patch_marker["colorscale"]
    cmin, cmax = fig_or_patch_marker["cmin"], fig_or_patch_marker["cmax"]
    stops = np.array([s[0] for s in scale])
    out = []
    for c in codes:
        t = (float(c) - cmin) / (cmax - cmin)
        i = int(np.searchsorted(stops, t, side="right")) - 1
        out.append(scale[max(0, min(i, len(scale) - 1))][1])
    return out


def test_each_class_has_one_colour_in_every_mode(run, data):
    t = run.table
    by_mode = {}
    for mode in ("label", "pred"):
        style = F.color_style(data, F.ViewState(mode=mode))
        colors = codes_to_colors(style.marker(), style.codes)
        names = t["label"] if mode == "label" else t["pred"]
        seen: dict[str, set[str]] = {}
        for name, color in zip(names, colors, strict=True):
            seen.setdefault(str(name), set()).add(color)
        assert all(len(v) == 1 for v in seen.values()), seen
        by_mode[mode] = {k: next(iter(v)) for k, v in seen.items()}
    # The same class name has the same colour as a true label and as a prediction.
    for name, color in by_mode["label"].items():
        if name in by_mode["pred"]:
            assert by_mode["pred"][name] == color
    assert len(set(by_mode["label"].values())) == 3  # distinct classes, distinct colours


def test_correct_mode_colours_and_misclassified_symbols(run, data):
    correct = run.table["correct"].to_numpy(dtype=bool)
    style = F.color_style(data, F.ViewState(mode="correct"))
    colors = np.array(codes_to_colors(style.marker(), style.codes))
    assert set(colors[correct]) == {F.CORRECT_COLOR}
    assert set(colors[~correct]) == {F.WRONG_COLOR}
    # Misclassified points carry a distinct symbol, whatever the colour mode.
    for mode in F.available_modes(data):
        marker = fig_json(F.build_figure(data, F.ViewState(mode=mode)))["data"][0]["marker"]
        symbols = decode(marker["symbol"])
        assert (symbols[~correct] == F.SYMBOL_WRONG).all()
        assert (symbols[correct] == F.SYMBOL_OK).all()


def test_confidence_mode_is_continuous_with_a_colour_bar(run, data):
    style = F.color_style(data, F.ViewState(mode="confidence"))
    conf = run.table["confidence"].to_numpy()
    assert style.showscale and style.colorbar["title"]["text"] == "confidence"
    assert np.corrcoef(style.codes.astype(float), conf)[0, 1] > 0.999
    assert style.codes.min() >= 1  # 0 is reserved for hidden points


def test_unlabelled_run_hides_label_modes(tmp_path):
    run = load(make_run(tmp_path, n=10, labelled=False))
    assert run.table["label"].isna().all()
    data = F.map_data(run.table, run.class_names)
    assert F.available_modes(data) == ["pred", "confidence"]
    assert F.default_mode(data) == "pred"
    assert F.available_filters(data) == ["all"]
    fig = fig_json(F.build_figure(data))
    assert "symbol" not in fig["data"][0]["marker"]  # nothing known to be wrong
    # A label mode asked for anyway falls back to a valid one.
    assert F.ViewState.from_inputs(data, "label", None, "wrong", None).mode == "pred"


def test_legend_hides_classes_and_filters_hide_points(run, data):
    entries, _ = F.legend(data, "label")
    assert [e.label for e in entries] == ["cat", "dog", EVIL]
    assert sum(e.count for e in entries) == 24
    view = F.ViewState(mode="label", hidden=frozenset({entries[0].key}))
    mask = F.visible_mask(data, view)
    assert not mask[(run.table["label"] == "cat").to_numpy()].any()
    assert mask[(run.table["label"] != "cat").to_numpy()].all()
    style = F.color_style(data, view)
    colors = np.array(codes_to_colors(style.marker(), style.codes))
    assert set(colors[~mask]) == {F.TRANSPARENT}
    assert F.TRANSPARENT not in set(colors[mask])

    wrong = F.visible_mask(data, F.ViewState(mode="label", show="wrong"))
    np.testing.assert_array_equal(wrong, ~run.table["correct"].to_numpy(dtype=bool))
    conf = run.table["confidence"].to_numpy()
    band = F.visible_mask(data, F.ViewState(mode="label", conf_range=(0.5, 0.8)))
    np.testing.assert_array_equal(band, (conf >= 0.5 - 1e-6) & (conf <= 0.8 + 1e-6))
    assert F.is_visible(data, view, int(np.flatnonzero(mask)[0]))


def test_color_patch_sends_codes_and_scale_only(data):
    patch = F.color_patch(data, F.ViewState(mode="pred")).to_plotly_json()
    ops = patch["operations"]
    locations = {tuple(op["location"]) for op in ops}
    assert all(loc[:3] == ("data", 0, "marker") for loc in locations)
    assert ("data", 0, "marker", "color") in locations
    assert not any(loc[-1] in ("x", "y", "customdata") for loc in locations)
    color = next(op for op in ops if op["location"][-1] == "color")["params"]["value"]
    assert set(color) == {"dtype", "bdata"} and color["dtype"] == "u1"
    assert len(decode(color)) == len(data)
    assert len(json.dumps(patch)) < 1500  # a few bytes per point, not the figure


def test_marker_and_selection_patches(data):
    ops = F.marker_patch(size=9).to_plotly_json()["operations"]
    assert ops == [{"operation": "Assign", "location": ["data", 0, "marker", "size"],
                    "params": {"value": 9.0}}]
    ops = F.marker_patch(opacity=0.3).to_plotly_json()["operations"]
    assert ops[0]["location"][-1] == "opacity" and ops[0]["params"]["value"] == 0.3
    ops = F.selection_patch(data, 5).to_plotly_json()["operations"]
    values = {op["location"][-1]: op["params"]["value"] for op in ops}
    assert values == {"x": [float(data.x[5])], "y": [float(data.y[5])]}
    assert all(op["location"][:2] == ["data", F.SELECTED_TRACE] for op in ops)
    cleared = F.selection_patch(data, None).to_plotly_json()["operations"]
    assert all(op["params"]["value"] == [] for op in cleared)


def test_legend_rows_show_class_names_as_text(data):
    entries, _ = F.legend(data, "label")
    rows = F.legend_rows(entries, hidden={entries[2].key})
    assert [r.id for r in rows] == [{"type": "legend-item", "index": i} for i in range(3)]
    assert rows[2].className == "legend-row off" and rows[0].className == "legend-row"
    name = rows[2].children[1]
    assert name.children == EVIL  # a text child: Dash renders it escaped
    assert "dangerously_allow_html" not in json.dumps(rows[2].to_plotly_json(), default=str)


def test_default_size_and_opacity_shrink_with_more_points():
    assert F.default_size(30) > F.default_size(1000) > F.default_size(100_000) >= 3
    assert F.default_opacity(30) > F.default_opacity(100_000) >= 0.4
