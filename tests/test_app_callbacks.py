"""The pure logic behind each callback, the app's wiring, serving and Jupyter mode."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.request

import numpy as np
import pytest
from dash import no_update
from dash.exceptions import PreventUpdate

from app_helpers import EVIL, FakeEngine, make_app, make_run
from featscope.app import callbacks as C
from featscope.app import figures as F
from featscope.app.cams import CamKey
from featscope.app.jobs import DONE


@pytest.fixture()
def app_ctx(tmp_path):
    app, engine = make_app(make_run(tmp_path, n=15), FakeEngine(delay=0.05))
    return app, app.featscope, engine


def ops(patch) -> dict[tuple, object]:
    return {tuple(op["location"]): op["params"].get("value")
            for op in patch.to_plotly_json()["operations"]}


def test_mode_change_recolours_and_resets_the_legend(app_ctx):
    _, ctx, _ = app_ctx
    patch, rows, hidden = C.mode_update(ctx, "pred", "all", [0, 1])
    o = ops(patch)
    assert ("data", 0, "marker", "color") in o
    pred_names = {str(v) for v in ctx.table["pred"]}
    assert {r.children[1].children for r in rows} == pred_names
    assert hidden == []
    # Confidence mode: a colour bar, no class legend.
    patch, rows, _ = C.mode_update(ctx, "confidence", "all", None)
    assert ops(patch)[("data", 0, "marker", "showscale")] is True and rows == []


def test_legend_clicks_toggle_a_class(app_ctx):
    _, ctx, _ = app_ctx
    entries, _ = F.legend(ctx.data, "label")
    patch, classes, hidden = C.filter_update(ctx, "legend-item", 1, "label", [], "all", None)
    assert hidden == [entries[1].key]
    assert classes == ["legend-row", "legend-row off", "legend-row"]
    codes = ops(patch)[("data", 0, "marker", "color")]
    assert set(codes) == {"dtype", "bdata"}
    _, classes, hidden = C.filter_update(ctx, "legend-item", 1, "label", hidden, "all", None)
    assert hidden == [] and "legend-row off" not in classes
    _, classes, hidden = C.filter_update(ctx, "legend-none", None, "label", [], "all", None)
    assert len(hidden) == len(entries) and set(classes) == {"legend-row off"}
    _, _, hidden = C.filter_update(ctx, "legend-all", None, "label", hidden, "all", None)
    assert hidden == []
    with pytest.raises(PreventUpdate):  # a re-rendered button (n_clicks 0) is no click
        C.filter_update(ctx, "legend-item", None, "label", [], "all", None)


def test_show_filter_and_confidence_range(app_ctx):
    _, ctx, _ = app_ctx
    wrong = ~ctx.table["correct"].to_numpy(dtype=bool)
    patch, _, hidden = C.filter_update(ctx, "show-filter", None, "label", [], "wrong", [0, 1])
    codes = F.color_style(ctx.data, F.ViewState(mode="label", show="wrong")).codes
    hidden_code = len(F.legend(ctx.data, "label")[0])
    assert ((codes == hidden_code) == ~wrong).all() and hidden == []
    assert ("data", 0, "marker", "color") in ops(patch)
    patch, _, _ = C.filter_update(ctx, "conf-range", None, "label", [], "all", [0.9, 1])
    sent = ops(patch)[("data", 0, "marker", "color")]
    codes = np.frombuffer(base64.b64decode(sent["bdata"]), np.uint8)
    low = ctx.table["confidence"].to_numpy() < 0.9 - 1e-6
    assert ((codes == hidden_code) == low).all()


def test_clicked_index_ignores_fresh_buttons():
    fresh = [{"prop_id": '{"index":0,"type":"legend-item"}.n_clicks', "value": 0}]
    assert C.clicked_index(fresh) is None
    real = [{"prop_id": '{"index":2,"type":"top5"}.n_clicks', "value": 1}]
    assert C.clicked_index(real) == 2
    assert C.top5_update(real, 3) == 2
    with pytest.raises(PreventUpdate):
        C.top5_update(real, 2)  # not a class of the model


def test_hover_shows_a_tooltip_only_for_visible_points(app_ctx):
    _, ctx, _ = app_ctx
    bbox = {"x0": 1, "x1": 3, "y0": 1, "y1": 3}
    show, box, kids = C.hover_update(ctx, {"id": 1, "bbox": bbox}, "label", [], "all", None)
    assert show is True and box == bbox
    assert "/thumb/1" in kids[0].children[0].src
    entries, codes = F.legend(ctx.data, "label")
    hidden = [entries[codes[1]].key]
    show, _, _ = C.hover_update(ctx, {"id": 1, "bbox": bbox}, "label", hidden, "all", None)
    assert show is False
    assert C.hover_update(ctx, None, "label", [], "all", None)[0] is False


def test_click_selects_rings_and_links(app_ctx):
    _, ctx, _ = app_ctx
    view = F.ViewState(mode="label")
    sel, search, patch = C.select_update(ctx, {"clicked"}, {"id": 4}, "", None, view)
    assert sel == {"id": 4, "cls": None, "method": None} and search == "?id=4"
    assert ops(patch)[("data", 1, "x")] == [float(ctx.data.x[4])]
    # A link opens the same view (class and method included).
    sel, search, _ = C.select_update(ctx, {"url"}, None, "?id=7&cls=2&method=hirescam",
                                     None, view)
    assert sel == {"id": 7, "cls": 2, "method": "hirescam"} and search is no_update
    # Our own URL update for the current image does nothing.
    with pytest.raises(PreventUpdate):
        C.select_update(ctx, {"url"}, None, "?id=7&cls=1", sel, view)
    # On page load the click store and the URL both "change": the URL decides.
    sel, _, _ = C.select_update(ctx, {"clicked", "url"}, None, "?id=3", None, view)
    assert sel["id"] == 3
    sel, search, patch = C.select_update(ctx, {"detail-close"}, None, "?id=3", sel, view)
    assert sel is None and search == "" and ops(patch)[("data", 1, "x")] == []
    # Clicks on hidden points are ignored.
    entries, codes = F.legend(ctx.data, "label")
    hidden_view = F.ViewState(mode="label", hidden=frozenset({entries[codes[4]].key}))
    with pytest.raises(PreventUpdate):
        C.select_update(ctx, {"clicked"}, {"id": 4}, "", None, hidden_view)


def test_detail_panel_content(app_ctx):
    _, ctx, _ = app_ctx
    out = C.detail_update(ctx, {"id": 1, "cls": None, "method": None})
    assert out["class"] == "detail"
    assert out["original"].startswith("/image/1?v=")
    assert out["cls"] == int(ctx.table["pred_index"].iat[1])  # predicted class by default
    assert out["method"] is no_update
    assert EVIL in json.dumps([c.to_plotly_json() for c in out["head"]],
                              default=lambda o: o.to_plotly_json())
    assert len(out["top5"]) == 3
    out = C.detail_update(ctx, {"id": 1, "cls": 0, "method": "layercam"})
    assert out["cls"] == 0 and out["method"] == "layercam"
    assert C.detail_update(ctx, None)["class"] == "detail hidden"


def test_cam_view_fast_method_computes_then_caches(app_ctx):
    _, ctx, engine = app_ctx
    key = C.cam_key(ctx, {"id": 2}, 1, "gradcam")
    assert key == CamKey(2, 1, "gradcam")
    view = C.cam_update(ctx, key)
    assert "cls=1" in view.heatmap_src and "kind=heatmap" in view.heatmap_src
    assert "kind=overlay" in view.download_src
    assert "computed in" in view.status and view.slow_prompt is None
    calls = len(engine.calls)
    assert "cached" in C.cam_update(ctx, key).status and len(engine.calls) == calls
    out = C.cam_outputs(ctx, key, view)
    assert out["slow_class"] == "slow hidden" and out["poll_disabled"] is True
    assert C.cam_key(ctx, {"id": 2}, 99, "gradcam") is None
    assert C.cam_key(ctx, {"id": 2}, 1, "nope") is None
    assert C.cam_update(ctx, None).heatmap_src is None


def test_slow_method_asks_first_then_runs_as_a_cancellable_job(app_ctx):
    _, ctx, engine = app_ctx
    key = CamKey(3, 0, "scorecam")
    view = C.cam_update(ctx, key)
    assert view.heatmap_src is None and "about 2 min" in view.slow_prompt
    assert engine.calls == []  # nothing starts before the user says so
    out = C.cam_outputs(ctx, key, view)
    assert out["slow_class"] == "slow" and out["start_disabled"] is False

    engine.delay, engine.steps = 1.0, 20
    out = C.job_update(ctx, "cam-start", key)
    assert out["poll_disabled"] is False and out["cancel_disabled"] is False
    assert out["start_disabled"] is True
    time.sleep(0.3)
    out = C.job_update(ctx, "job-poll", key)
    assert 0 < float(out["progress"]) < 1 and "/ 20" in out["progress_text"]
    out = C.job_update(ctx, "cam-cancel", key)
    ctx.jobs.get(key).wait(5)
    out = C.job_update(ctx, "job-poll", key)
    assert "cancelled" in out["status"] and out["poll_disabled"] is True
    assert out["heatmap"] is None

    engine.delay, engine.steps = 0.1, 2
    C.job_update(ctx, "cam-start", key)
    assert ctx.jobs.get(key).wait(5) and ctx.jobs.get(key).state == DONE
    out = C.job_update(ctx, "job-poll", key)
    assert out["heatmap"] and "method=scorecam" in out["heatmap"]
    assert out["poll_disabled"] is True and out["slow_class"] == "slow hidden"
    assert "cached" in C.cam_update(ctx, key).status  # the same click again: instant
    # Even when the LRU has dropped it, the finished job's result is shown and served.
    ctx.cams._cache.clear()
    assert "cached" in C.cam_update(ctx, key).status
    assert ctx.cams.cached(key) is not None


def test_cam_errors_are_shown_not_raised(app_ctx):
    _, ctx, engine = app_ctx

    def broken(*a, **k):
        raise RuntimeError("bad layer")

    engine.compute = broken
    view = C.cam_update(ctx, CamKey(0, 0, "gradcam"))
    assert view.error and "bad layer" in view.status


def test_model_status_and_method_list(app_ctx):
    _, ctx, _ = app_ctx
    text, cls, stop, options = C.model_status(ctx)
    assert text.startswith("model ready") and "ready" in cls and stop is True
    assert {"label": "Score-CAM (slow)", "value": "scorecam"} in options


def test_every_callback_id_exists_in_the_layout(app_ctx):
    app, _, _ = app_ctx
    layout = json.dumps(app.layout.to_plotly_json(), default=lambda o: o.to_plotly_json())
    deps = app.server.test_client().get("/_dash-dependencies").get_json()
    ids = set()
    for dep in deps:
        outs = dep["output"].strip(".").split("...")
        ids |= {o.split("@")[0].rsplit(".", 1)[0] for o in outs}
        ids |= {i["id"] for i in dep["inputs"] + dep["state"] if isinstance(i["id"], str)}
    ids = {i for i in ids if not i.startswith("{")}  # pattern-matching ids are made later
    assert {"map", "tip", "url", "cam-class", "job-poll"} <= ids
    for cid in ids:
        assert f'"id": "{cid}"' in layout, cid


# --------------------------------------------------------------------------------------
# Serving


def test_exposure_warning_only_off_loopback():
    from featscope.app.server import exposure_warning

    assert exposure_warning("127.0.0.1") is None
    assert exposure_warning("localhost") is None
    assert exposure_warning("::1") is None
    assert "anyone" in exposure_warning("0.0.0.0")
    assert "anyone" in exposure_warning("192.168.1.20")


def test_run_json_rebuilds_the_same_model(lite_run):
    from featscope.models import ModelSpec, load_model

    spec = ModelSpec.from_dict(lite_run.meta["model"])
    bundle = load_model(spec)
    assert bundle.fingerprint == lite_run.meta["model"]["fingerprint"]
    assert bundle.class_names == lite_run.class_names
    assert bundle.cam_layer_name == "_head_act" and spec.feature_layer is None


def test_waitress_serves_the_app(tmp_path):
    from featscope.app.server import BackgroundServer

    app, _ = make_app(make_run(tmp_path, n=6))
    with BackgroundServer.start(app=app) as srv:
        base = srv.url
        assert base.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(base + "/", timeout=10) as r:
            assert r.status == 200 and r.headers["Server"] == "featscope"
            page = r.read().decode()
        assert "_dash-renderer" in page or "dash_renderer" in page
        assert ".legend-row" in page  # the inline style sheet
        with urllib.request.urlopen(base + "/thumb/0", timeout=10) as r:
            assert r.headers["Content-Type"] == "image/jpeg"
    assert not srv.thread.is_alive()  # stopped cleanly


def test_serve_prints_url_and_warns_off_loopback(tmp_path, monkeypatch, capsys):
    from featscope.app import server as S

    app, _ = make_app(make_run(tmp_path, n=6))
    monkeypatch.setattr(S, "create_app", lambda *a, **k: app)
    ran = {}

    class FakeServer:
        effective_port = 8123

        def run(self):
            ran["run"] = True

        def close(self):
            ran["close"] = True

    monkeypatch.setattr("waitress.server.create_server", lambda *a, **k: FakeServer())
    S.serve(tmp_path, host="0.0.0.0", port=8123)
    out = capsys.readouterr()
    assert "http://127.0.0.1:8123/" in out.out
    assert "warning" in out.err and "0.0.0.0" in out.err
    assert ran == {"run": True, "close": True}
    S.serve(tmp_path, host="127.0.0.1", port=8123)
    assert "warning" not in capsys.readouterr().err


def test_show_uses_dash_jupyter_mode(tmp_path, monkeypatch):
    import dash

    from featscope.app import server as S

    app, _ = make_app(make_run(tmp_path, n=6))
    monkeypatch.setattr(S, "create_app", lambda *a, **k: app)
    seen = {}
    monkeypatch.setattr(dash.Dash, "run", lambda self, **kw: seen.update(kw))
    assert S.show(tmp_path, port=8999) is app
    assert seen["jupyter_mode"] == "inline" and seen["port"] == 8999
    assert seen["debug"] is False
    # Under a Jupyter proxy the image URLs follow Dash's path prefix.
    dict.__setitem__(app.config, "requests_pathname_prefix", "/user/me/proxy/8999/")
    assert app.featscope.thumb_url(1).startswith("/user/me/proxy/8999/thumb/1")


def test_create_app_does_not_wait_for_the_model(tmp_path):
    from featscope.app.cams import ModelHandle
    from featscope.app.server import create_app

    gate = threading.Event()
    handle = ModelHandle(lambda mod: gate.wait(10) or FakeEngine())
    t0 = time.perf_counter()
    app = create_app(make_run(tmp_path, n=6), device="cpu", model=handle)
    assert time.perf_counter() - t0 < 5
    assert handle.status == "loading"
    assert app.server.test_client().get("/_dash-layout").status_code == 200
    gate.set()
    handle.get(timeout=10)
