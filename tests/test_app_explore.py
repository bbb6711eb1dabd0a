"""The logic behind the finding callbacks (selection, gallery, export, suspects, confusion,
neighbours, CAM gallery, 3-D), called as the callbacks call it, without a browser."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pandas as pd
import pytest
from dash.exceptions import PreventUpdate

from app_helpers import (
    EVIL,
    FakeEngine,
    add_neighbours_and_scores,
    json_dicts,
    make_app,
    make_run,
)
from featscope.app import explore_callbacks as X
from featscope.app import figures as F
from featscope.app import selection as S
from featscope.app.jobs import CANCELLED, DONE


@pytest.fixture()
def app_ctx(tmp_path):
    run = add_neighbours_and_scores(make_run(tmp_path, n=36), proj3d=True)
    app, engine = make_app(run, FakeEngine(delay=0.02))
    return app, app.featscope, engine


VIEW = F.ViewState(mode="label")


def ops(patch) -> dict[tuple, object]:
    return {tuple(op["location"]): op["params"].get("value")
            for op in patch.to_plotly_json()["operations"]}


def click(kind: str, index, value: int = 1) -> list[dict]:
    return [{"prop_id": json.dumps({"index": index, "type": kind}, separators=(",", ":"))
             + ".n_clicks", "value": value}]


def gallery_ids(out) -> list[int]:
    return [tile.id["index"] for tile in out["gallery"]]


def test_lasso_fills_the_gallery_page_by_page(app_ctx):
    _, ctx, _ = app_ctx
    chosen = list(range(2, 36, 1))  # 34 images: two pages of 30 and 4
    spec = X.lasso_spec(ctx, chosen)
    assert len(json.dumps(spec)) < 200  # a bit set, not a list of points
    out = X.selection_update(ctx, spec, VIEW, 0, "id", "subset")
    assert gallery_ids(out) == chosen[:30]
    assert out["pager"] == "1–30 of 34 images" and out["prev_disabled"] is True
    assert out["next_disabled"] is False and out["export_disabled"] is False
    assert out["source"] == "lasso on the map"
    out = X.selection_update(ctx, spec, VIEW, out["page"], "id", "gal-next")
    assert gallery_ids(out) == chosen[30:] and out["page"] == 1 and out["next_disabled"]
    # Tiles carry the true and the predicted label, as text.
    tile = X.selection_update(ctx, X.lasso_spec(ctx, [1]), VIEW, 0, "id", "subset")["gallery"][0]
    dumped = json.dumps(tile.to_plotly_json(), default=lambda o: o.to_plotly_json())
    row = ctx.table.iloc[1]
    assert EVIL in dumped and row["pred"] in dumped and str(row["label"]) in dumped
    assert "/thumb/1?" in dumped and "dangerously_allow_html" not in dumped
    # Filters narrow the selection; the summary says how many they hide.
    wrong = F.ViewState(mode="label", show="wrong")
    out = X.selection_update(ctx, spec, wrong, 0, "id", "subset")
    expected = [i for i in chosen if not ctx.table["correct"].iat[i]]
    assert gallery_ids(out) == expected
    assert f"({len(chosen) - len(expected)} more hidden by the filters)" in out["summary"]
    empty = X.selection_update(ctx, None, VIEW, 3, "id", "subset")
    assert empty["gallery"] == [] and empty["export_disabled"] and empty["clear_disabled"]


def test_gallery_order_puts_suspects_first(app_ctx):
    _, ctx, _ = app_ctx
    spec = {"kind": "filters"}
    out = X.selection_update(ctx, spec, VIEW, 0, "suspect", "gal-order")
    scores = ctx.table["score_neighbor_disagreement"].to_numpy()[gallery_ids(out)]
    assert np.all(np.diff(scores) <= 1e-7)


def test_confusion_cell_selects_exactly_its_images(app_ctx):
    _, ctx, _ = app_ctx
    _, axes, note = X.confusion_update(ctx, VIEW)
    assert "36 labelled images" in note
    t = ctx.table
    for i, true in enumerate(axes["rows"]):
        for j, pred in enumerate(axes["cols"]):
            spec, patch = X.subset_update(ctx, "confusion", None, VIEW,
                                          confusion_click={"points": [{"x": j, "y": i}]},
                                          axes=axes)
            expected = np.flatnonzero((t["label"] == true).to_numpy()
                                      & (t["pred"] == pred).to_numpy()).tolist()
            assert spec == {"kind": "cell", "label": true, "pred": pred}
            assert S.selected_ids(spec, ctx.data, VIEW).tolist() == expected
            # The map shows it like a lasso: those points selected, plotly's own cleared.
            o = ops(patch)
            assert o[("data", 0, "selectedpoints")] == expected
            assert o[("layout", "selections")] == []
    with pytest.raises(PreventUpdate):
        X.subset_update(ctx, "confusion", None, VIEW, confusion_click=None, axes=axes)


def test_suspects_row_selects_and_opens_its_image(app_ctx):
    _, ctx, _ = app_ctx
    out = X.suspects_update(ctx, None, None, None, 0, VIEW, None)
    first = out["body"][0].id["index"]
    assert first == int(ctx.run.suspects()["id"].iat[0])  # the run's own ranking
    assert out["sort"] == {"by": "score_neighbor_disagreement", "desc": True}
    assert out["pager"] == "1–12 of 36"
    rows = click("sus-row", first)
    spec, patch = X.subset_update(ctx, "sus-row", rows, VIEW)
    assert spec == {"kind": "ids", "ids": [first], "source": "suspects"}
    assert ops(patch)[("data", 0, "selectedpoints")] == [first]
    opened = X.open_update(ctx, rows)
    assert opened["id"] == first and opened["source"] == "sus-row"
    # The opening click may hit an image the filters hide on the map: it still opens.
    hidden_view = F.ViewState(mode="label", show="wrong" if ctx.table["correct"].iat[first]
                              else "correct")
    from featscope.app import callbacks as C
    sel, search, _ = C.select_update(ctx, {"clicked"}, opened, "", None, hidden_view)
    assert sel["id"] == first and search == f"?id={first}"
    with pytest.raises(PreventUpdate):  # a map click on a hidden point does nothing
        C.select_update(ctx, {"clicked"}, {"id": first}, "", None, hidden_view)
    # Freshly rendered rows (n_clicks 0) are not clicks.
    with pytest.raises(PreventUpdate):
        X.subset_update(ctx, "sus-row", click("sus-row", first, 0), VIEW)
    with pytest.raises(PreventUpdate):
        X.open_update(ctx, click("sus-row", first, 0))
    # "Select this page": the page's images, in ranking order.
    spec, _ = X.subset_update(ctx, "sus-select", None, VIEW, sus_sort=out["sort"], sus_page=1)
    page2 = X.suspects_update(ctx, "sus-next", None, out["sort"], 0, VIEW, None)
    assert spec["ids"] == [r.id["index"] for r in page2["body"]]


def test_suspects_sort_and_pages(app_ctx):
    _, ctx, _ = app_ctx
    out = X.suspects_update(ctx, "sus-sort", click("sus-sort", "confidence"),
                            None, 2, VIEW, {"id": 4})
    assert out["sort"] == {"by": "confidence", "desc": False} and out["page"] == 0
    conf = ctx.table["confidence"].to_numpy()[[r.id["index"] for r in out["body"]]]
    assert np.all(np.diff(conf) >= 0)
    assert out["sub"] == "ranked by confidence (lowest first)"
    nxt = X.suspects_update(ctx, "sus-next", None, out["sort"], out["page"], VIEW, None)
    assert nxt["page"] == 1 and nxt["pager"] == "13–24 of 36"
    # A new filter goes back to the top of the ranking.
    again = X.suspects_update(ctx, "filters", None, out["sort"], 2, VIEW, None)
    assert again["page"] == 0


def test_select_all_shown_and_clear(app_ctx):
    _, ctx, _ = app_ctx
    spec, patch = X.subset_update(ctx, "sel-all", None, VIEW)
    assert spec == {"kind": "filters"}
    assert ops(patch)[("data", 0, "selectedpoints")] is None  # nothing dimmed
    wrong = F.ViewState(mode="label", show="wrong")
    assert S.selected_ids(spec, ctx.data, wrong).tolist() == np.flatnonzero(
        ~ctx.table["correct"].to_numpy(dtype=bool)).tolist()
    spec, patch = X.subset_update(ctx, "sel-clear", None, VIEW)
    assert spec is None and ops(patch)[("data", 0, "selectedpoints")] is None


def test_exports_are_the_filtered_selection(app_ctx):
    _, ctx, _ = app_ctx
    spec = X.lasso_spec(ctx, [0, 1, 5, 9, 30])
    wrong_or_not = F.ViewState(mode="label", conf_range=(0.0, 1.0))
    csv = X.export_update(ctx, "export-csv", spec, wrong_or_not)
    assert csv["filename"].endswith("-selection-5.csv") and csv["type"] == "text/csv"
    table = pd.read_csv(io.StringIO(csv["content"]))
    assert table["id"].tolist() == [0, 1, 5, 9, 30]
    assert table.columns.tolist() == ["id", "path", "label", "pred", "confidence", "x", "y"]
    assert table["path"].tolist() == ctx.table["path"].iloc[[0, 1, 5, 9, 30]].tolist()
    paths = X.export_update(ctx, "export-paths", spec, wrong_or_not)
    assert paths["content"].splitlines() == table["path"].tolist()
    wrong = F.ViewState(mode="label", show="wrong")
    csv = X.export_update(ctx, "export-csv", spec, wrong)
    ids = pd.read_csv(io.StringIO(csv["content"]))["id"].tolist()
    assert ids == [i for i in [0, 1, 5, 9, 30] if not ctx.table["correct"].iat[i]]
    with pytest.raises(PreventUpdate):
        X.export_update(ctx, "export-csv", None, VIEW)


def test_neighbours_are_a_row_of_the_stored_table(app_ctx):
    _, ctx, _ = app_ctx
    tiles = X.neighbours_update(ctx, {"id": 7}, 6)
    expected = ctx.run.neighbors(7, 6)  # the Python API
    assert [t.id["index"] for t in tiles] == expected["id"].tolist()
    sims = [float(t.children[1].children[0].children) for t in tiles]
    np.testing.assert_allclose(sims, expected["similarity"], atol=5e-4)
    assert 7 not in [t.id["index"] for t in tiles]
    assert X.open_update(ctx, click("nb-tile", int(expected["id"].iat[0])))["id"] == int(
        expected["id"].iat[0])
    assert X.neighbours_update(ctx, None, 6) == []
    # No scan: the lookup reads the memory-mapped row only.
    assert isinstance(ctx.run.neighbor_index, np.memmap)


def test_runs_without_a_neighbour_table_say_so(tmp_path):
    app, _ = make_app(make_run(tmp_path, n=8))
    tiles = X.neighbours_update(app.featscope, {"id": 2}, 6)
    assert "no neighbour table" in tiles[0].children


def test_cam_gallery_runs_in_the_background_reuses_the_cache_and_cancels(app_ctx):
    app, ctx, engine = app_ctx
    spec = X.lasso_spec(ctx, list(range(10)))
    out = X.camgallery_update(ctx, "camg-start", spec, VIEW, "id", 6, "gradcam", "pred", None)
    assert out["cancel_disabled"] is False and out["poll_disabled"] is False
    key = tuple(out["job"])
    assert ctx.jobs.get(key).wait(10) and ctx.jobs.get(key).state == DONE
    out = X.camgallery_update(ctx, "camg-poll", spec, VIEW, "id", 6, "gradcam", "pred",
                              out["job"])
    tiles = out["grid"]
    assert [t.id["index"] for t in tiles] == list(range(6))  # the limit, in gallery order
    srcs = [t.children[0].children[0].src for t in tiles]
    preds = ctx.table["pred_index"].to_numpy()
    assert all(f"/cam/{i}?cls={preds[i]}&method=gradcam&kind=overlay" in s
               for i, s in zip(range(6), srcs, strict=True))
    assert out["progress"] == "1.0" and "6" in out["status"] and out["poll_disabled"]
    assert len(engine.calls) == 6
    # Served from the app's CAM cache: the single-CAM route computes nothing new.
    client = app.server.test_client()
    resp = client.get(srcs[0])
    assert resp.status_code == 200 and resp.mimetype == "image/jpeg"
    assert len(engine.calls) == 6
    # The same images for the true class: only those whose label differs are new work.
    out = X.camgallery_update(ctx, "camg-start", spec, VIEW, "id", 6, "gradcam", "label", None)
    ctx.jobs.get(tuple(out["job"])).wait(10)
    wrong = int((~ctx.table["correct"].to_numpy(dtype=bool)[:6]).sum())
    assert len(engine.calls) == 6 + wrong

    # Cancel: a slow engine, stopped between images.
    engine.delay = 0.3
    out = X.camgallery_update(ctx, "camg-start", X.lasso_spec(ctx, list(range(10, 30))), VIEW,
                              "id", 20, "gradcam", "pred", None)
    out = X.camgallery_update(ctx, "camg-cancel", None, VIEW, "id", 20, "gradcam", "pred",
                              out["job"])
    job = ctx.jobs.get(tuple(out["job"]))
    assert job.wait(5) and job.state == CANCELLED
    assert "cancelled" in out["status"] and out["start_disabled"] is False
    assert len(engine.calls) < 6 + wrong + 20
    # A new selection resets the gallery (and stops a running one).
    idle = X.camgallery_update(ctx, "subset", spec, VIEW, "id", 4, "gradcam", "pred", None)
    assert idle["grid"] == [] and "first 4" in idle["status"]


def test_cam_gallery_limit_is_clamped(app_ctx):
    from featscope.app.camgallery import MAX_LIMIT, clamp_limit

    assert clamp_limit(None) == 24 and clamp_limit("x") == 24
    assert clamp_limit(0) == 1 and clamp_limit(10**6) == MAX_LIMIT


def test_3d_switch_rebuilds_the_map_with_the_same_traces(app_ctx):
    _, ctx, _ = app_ctx
    fig, hint = X.dims_update(ctx, 3, VIEW, 6, 0.8, {"id": 4})
    main, ring = fig["data"]
    assert main["type"] == ring["type"] == "scatter3d"
    assert set(main["z"]) == {"dtype", "bdata"}  # typed arrays, as in 2-D
    p3 = ctx.run.proj3d
    assert ring["x"] == [pytest.approx(float(p3[4, 0]))]
    assert ring["z"] == [pytest.approx(float(p3[4, 2]))]
    assert "rotate" in hint
    # Patches address the same trace in 3-D: recolour, ring.
    patch = F.selection_patch(ctx.data, 5, dims=3)
    assert ops(patch)[("data", 1, "z")] == [pytest.approx(float(p3[5, 2]))]
    fig, _ = X.dims_update(ctx, 2, VIEW, 6, 0.8, None)
    assert fig["data"][0]["type"] == "scattergl"


def test_no_3d_map_falls_back_to_2d(tmp_path):
    app, _ = make_app(make_run(tmp_path, n=8))
    fig, _ = X.dims_update(app.featscope, 3, VIEW, 6, 0.8, None)
    assert fig["data"][0]["type"] == "scattergl"


def test_every_id_a_callback_names_is_on_the_page(app_ctx):
    """Dash only checks this in the browser: do it for the whole app here."""
    app, _, _ = app_ctx
    client = app.server.test_client()
    layout = client.get("/_dash-layout").get_json()
    deps = client.get("/_dash-dependencies").get_json()
    ids = {d["props"]["id"] for d in json_dicts(layout)  # components: type, namespace, props
           if "namespace" in d and isinstance(d["props"].get("id"), str)}
    named = set()
    for dep in deps:
        # "..a.prop...b.prop.." for several outputs; "{...}" ids are pattern-matching ones.
        outputs = [o.split("@")[0].rsplit(".", 1)[0]
                   for o in dep["output"].strip(".").split("...")]
        for cid in [*outputs, *(i["id"] for i in dep["inputs"]),
                    *(s["id"] for s in dep["state"])]:
            if not cid.startswith("{"):
                named.add(cid)
    assert len(named) > 40 and named - ids == set()


def test_the_map_follows_the_new_filters(app_ctx):
    from featscope.app import callbacks as C

    _, ctx, _ = app_ctx
    dog = ctx.data.vocab.index("dog")
    filters = {"labels": [dog], "preds": [], "splits": [], "search": ""}
    patch, _, _ = C.filter_update(ctx, "filters", None, "label", [], "all", None, filters)
    hidden_code = len(F.legend(ctx.data, "label")[0])
    codes = np.frombuffer(base64.b64decode(
        ops(patch)[("data", 0, "marker", "color")]["bdata"]), np.uint8)
    np.testing.assert_array_equal(codes != hidden_code, (ctx.table["label"] == "dog").to_numpy())
    # A colour-mode change keeps them.
    patch, _, _ = C.mode_update(ctx, "pred", "all", None, filters)
    codes = np.frombuffer(base64.b64decode(
        ops(patch)[("data", 0, "marker", "color")]["bdata"]), np.uint8)
    assert ((codes == len(F.legend(ctx.data, "pred")[0]))
            == (ctx.table["label"] != "dog").to_numpy()).all()
    # Hover on a filtered-out point shows nothing.
    cat_id = int(np.flatnonzero((ctx.table["label"] == "cat").to_numpy())[0])
    bbox = {"x0": 0, "x1": 1, "y0": 0, "y1": 1}
    assert C.hover_update(ctx, {"id": cat_id, "bbox": bbox}, "label", [], "all", None,
                          filters)[0] is False
