"""Dash callbacks: thin wrappers around the pure ``*_update`` functions below.

Each ``*_update`` takes the app context and plain values and returns plain values (or a
``Patch``), so it is unit-tested without a browser; ``register_callbacks`` only wires ids.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from dash import ALL, Dash, Input, Output, State, callback_context, no_update
from dash.exceptions import PreventUpdate

from ..errors import FeatscopeError
from . import figures as F
from .cams import CamKey, Superseded
from .context import AppContext
from .jobs import CANCELLED, DONE, FAILED, RUNNING
from .panels import (
    CamView,
    ImageInfo,
    cam_status_text,
    click_target,
    detail_header,
    format_url,
    hover_target,
    job_progress_text,
    method_options,
    parse_index,
    parse_url,
    slow_prompt_text,
    tooltip_children,
    top5_children,
)

log = logging.getLogger(__name__)


def _view(ctx: AppContext, mode, hidden, show, conf, filters=None) -> F.ViewState:
    return F.ViewState.from_inputs(ctx.data, mode, hidden, show, conf, filters)


# --------------------------------------------------------------------------------------
# Map: colour mode, legend, filters, size, opacity


def mode_update(ctx: AppContext, mode: str | None, show: str | None, conf: list[float] | None,
                filters: dict | None = None) -> tuple[Any, list[Any], list[str]]:
    """(figure Patch, legend rows, hidden keys) for a new colour mode: all entries shown."""
    view = _view(ctx, mode, [], show, conf, filters)
    entries, _ = F.legend(ctx.data, view.mode)
    return F.color_patch(ctx.data, view), F.legend_rows(entries), []


def pattern_click(triggered: list[dict[str, Any]] | None) -> tuple[str, Any] | None:
    """(type, index) of a pattern-matching component that was really clicked (n_clicks > 0;
    freshly rendered ones also trigger, with 0)."""
    for t in triggered or []:
        if not t.get("value"):
            continue
        try:
            tid = json.loads(t.get("prop_id", "").rsplit(".", 1)[0])
        except ValueError:
            continue
        if isinstance(tid, dict) and "index" in tid:
            return str(tid.get("type")), tid["index"]
    return None


def clicked_index(triggered: list[dict[str, Any]]) -> int | None:
    """Integer index of a pattern-matching button that was really clicked."""
    hit = pattern_click(triggered)
    return int(hit[1]) if hit and isinstance(hit[1], int) else None


def filter_update(
    ctx: AppContext, trigger: str | None, clicked: int | None, mode: str | None,
    hidden: list[str] | None, show: str | None, conf: list[float] | None,
    filters: dict | None = None,
) -> tuple[Any, list[str], list[str]]:
    """(figure Patch, legend row classes, hidden keys) after a legend click or a filter
    (``filters``: the class, split and file-name filters, see ``ViewState.from_inputs``)."""
    entries, _ = F.legend(ctx.data, _view(ctx, mode, [], show, conf).mode)
    keys = [e.key for e in entries]
    hidden_set = set(hidden or ())
    if trigger == "legend-all":
        hidden_set = set()
    elif trigger == "legend-none":
        hidden_set = set(keys)
    elif trigger == "legend-item":
        if clicked is None or not 0 <= clicked < len(keys):
            raise PreventUpdate
        hidden_set ^= {keys[clicked]}
    new_hidden = [k for k in keys if k in hidden_set]
    view = _view(ctx, mode, new_hidden, show, conf, filters)
    classes = [F.legend_row_class(e, new_hidden) for e in entries]
    return F.color_patch(ctx.data, view), classes, new_hidden


def hover_update(
    ctx: AppContext, hover: dict | None, mode, hidden, show, conf, filters=None
) -> tuple[bool, Any, Any]:
    """(show, bbox, children) of the tooltip for a hovered point; hidden points show none."""
    target = hover_target(hover, ctx.n)
    if target is None:
        return False, no_update, no_update
    image_id, bbox = target
    if not F.is_visible(ctx.data, _view(ctx, mode, hidden, show, conf, filters), image_id):
        return False, no_update, no_update
    info = ImageInfo.from_table(ctx.table, image_id)
    return True, bbox, tooltip_children(info, ctx.thumb_url(image_id))


# --------------------------------------------------------------------------------------
# Selection: click, URL, close


def select_update(
    ctx: AppContext, triggered: set[str], click: dict | None, search: str | None,
    current: dict | None, view: F.ViewState, dims: int | None = 2,
) -> tuple[Any, Any, Any]:
    """(selection store, url search, ring Patch). Selection: {id, cls, method} or None.
    ``triggered``: ids of the inputs that changed (on page load several at once). A click
    with a ``source`` (gallery, neighbours, suspects) opens its image even when the filters
    hide it on the map; a click on the map itself only hits visible points."""
    dims = 3 if dims == 3 else 2
    if "detail-close" in triggered:
        return None, "", F.selection_patch(ctx.data, None, dims)
    if "clicked" in triggered and click:
        image_id = click_target(click, ctx.n)
        if image_id is None:
            raise PreventUpdate
        if not click.get("source") and not F.is_visible(ctx.data, view, image_id):
            raise PreventUpdate
        sel = {"id": image_id, "cls": None, "method": None}
        return sel, format_url(image_id), F.selection_patch(ctx.data, image_id, dims)
    if "url" not in triggered:
        raise PreventUpdate
    # The URL changed (page load, back/forward, or our own update).
    module = ctx.cams.model.module_if_ready()
    methods = list(module.METHODS) if module is not None else None
    state = parse_url(search, ctx.n, len(ctx.class_names), methods)
    current_id = current.get("id") if current else None
    if state.image_id == current_id:
        raise PreventUpdate  # our own URL update, or nothing new
    if state.image_id is None:
        return None, no_update, F.selection_patch(ctx.data, None, dims)
    sel = {"id": state.image_id, "cls": state.target, "method": state.method}
    return sel, no_update, F.selection_patch(ctx.data, state.image_id, dims)


def detail_update(ctx: AppContext, selection: dict | None) -> dict[str, Any]:
    """Everything in the detail panel that does not need the model."""
    if not selection:
        return {"class": "detail hidden", "head": [], "original": None, "base": None,
                "link": None, "top5": [], "cls": no_update, "method": no_update}
    image_id = int(selection["id"])
    info = ImageInfo.from_table(ctx.table, image_id)
    target = selection.get("cls")
    target = info.pred_index if target is None else int(target)
    src = ctx.image_url(image_id)
    return {
        "class": "detail",
        "head": detail_header(info),
        "original": src,
        "base": src,
        "link": src,
        "top5": top5_children(info, ctx.class_names, target),
        "cls": target,
        "method": selection.get("method") or no_update,
    }


def top5_update(triggered: list[dict], n_classes: int) -> int:
    """The class a top-5 row stands for, when it was really clicked (not just rendered)."""
    idx = clicked_index(triggered)
    if idx is None or parse_index(idx, n_classes) is None:
        raise PreventUpdate
    return idx


def top5_classes(indices: list[int], target: int | None) -> list[str]:
    """Row classes of the top-5 list: the explained class is marked."""
    return ["top5-row active" if i == target else "top5-row" for i in indices]


# --------------------------------------------------------------------------------------
# CAM


def _method_label(ctx: AppContext, method: str) -> str:
    return ctx.cam.METHODS.get(method, method)


def _class_name(ctx: AppContext, target: int) -> str:
    names = ctx.class_names
    return names[target] if 0 <= target < len(names) else str(target)


def cam_key(ctx: AppContext, selection: dict | None, target: Any, method: Any) -> CamKey | None:
    if not selection:
        return None
    image_id = parse_index(selection.get("id"), ctx.n)
    cls = parse_index(target, len(ctx.class_names))
    if image_id is None or cls is None or method not in ctx.cam.METHODS:
        return None
    return CamKey(image_id, cls, str(method))


def _shown(ctx: AppContext, key: CamKey, item, *, cached: bool) -> CamView:
    return CamView(
        overlay_src=ctx.cam_url(key.image_id, key.target, key.method, "heatmap"),
        heatmap_src=ctx.cam_url(key.image_id, key.target, key.method, "heatmap"),
        download_src=ctx.cam_url(key.image_id, key.target, key.method, "overlay"),
        status=cam_status_text(_method_label(ctx, key.method), _class_name(ctx, key.target),
                               key.target, item.seconds, cached),
    )


def cam_update(ctx: AppContext, key: CamKey | None) -> CamView:
    """Compute (or fetch) the CAM for ``key``; slow methods only say what they would cost."""
    if key is None:
        return CamView()
    hit = ctx.cams.cached(key)
    if hit is not None:
        return _shown(ctx, key, hit, cached=True)
    if ctx.cams.is_slow(key.method):
        job = ctx.jobs.get(key)
        if job is not None and job.state == DONE and job.result is not None:
            ctx.cams.remember(job.result)  # finished earlier; the cache had dropped it
            return _shown(ctx, key, job.result, cached=True)
        est = ctx.cams.estimate_seconds(key.method, timeout=30.0)
        text = slow_prompt_text(_method_label(ctx, key.method), est, ctx.device)
        view = CamView(slow_prompt=text, status="")
        if job is not None and job.active:
            view.status = "running in the background…"
        return view
    try:
        item = ctx.cams.get(key)
    except Superseded:
        raise PreventUpdate from None
    except FeatscopeError as exc:
        return CamView(status=str(exc), error=True)
    except Exception as exc:  # noqa: BLE001 - one bad image must not break the app
        log.exception("CAM %s failed", key)
        return CamView(status=f"CAM failed: {type(exc).__name__}: {exc}", error=True)
    return _shown(ctx, key, item, cached=False)


def cam_outputs(ctx: AppContext, key: CamKey | None, view: CamView) -> dict[str, Any]:
    """The CAM view as the values of the detail panel's components."""
    job = ctx.jobs.get(key) if key is not None else None
    running = job is not None and job.active
    out: dict[str, Any] = {
        "overlay": view.overlay_src,
        "heatmap": view.heatmap_src,
        "download": view.download_src,
        "status": view.status,
        "status_class": "cam-status error" if view.error else "cam-status",
        "slow_class": "slow" if view.slow_prompt else "slow hidden",
        "slow_text": view.slow_prompt or "",
        "start_disabled": running,
        "cancel_disabled": not running,
        "progress": str(job.fraction if job is not None else 0),
        "progress_text": job_progress_text(job.state, job.done, job.total, job.elapsed)
        if job is not None and view.slow_prompt else "",
        "poll_disabled": not running,
    }
    return out


def job_update(ctx: AppContext, trigger: str | None, key: CamKey | None) -> dict[str, Any]:
    """Start, cancel or poll the background job of the current slow CAM."""
    if key is None or not ctx.cams.is_slow(key.method):
        raise PreventUpdate
    if trigger == "cam-start":
        ctx.jobs.start(key, ctx.cams.job(key), group=key.image_id)
    elif trigger == "cam-cancel":
        ctx.jobs.cancel(key)
    job = ctx.jobs.get(key)
    if job is None:
        raise PreventUpdate
    label = _method_label(ctx, key.method)
    if job.state == DONE:
        ctx.cams.remember(job.result)  # the image URLs below are served from the cache
        view = _shown(ctx, key, job.result, cached=False)
        return cam_outputs(ctx, key, view)
    view = CamView(slow_prompt=slow_prompt_text(
        label, ctx.cams.estimate_seconds(key.method), ctx.device))
    if job.state == RUNNING:
        view.status = "running in the background…"
    elif job.state == CANCELLED:
        view.status = f"{label} cancelled"
    elif job.state == FAILED:
        view.status, view.error = f"{label} failed: {job.error}", True
    return cam_outputs(ctx, key, view)


def model_status(ctx: AppContext) -> tuple[str, str, bool, Any]:
    """(text, class, stop polling, CAM method options) of the header's model indicator;
    the method list comes from the CAM module once it is imported."""
    handle = ctx.cams.model
    status = handle.status
    module = handle.module_if_ready()
    options = method_options(module.METHODS, module.SLOW_METHODS) if module else no_update
    if status == "loading":
        return "model loading…", "model-status loading", False, options
    if status == "failed":
        return f"model failed: {handle.error}", "model-status failed", True, options
    secs = f" in {handle.seconds:.1f} s" if handle.seconds is not None else ""
    return f"model ready on {ctx.device}{secs}", "model-status ready", True, options


# --------------------------------------------------------------------------------------
# Wiring


# Dash's Graph copies ``customdata[pointNumber]`` from the *figure prop* into event data, where
# customdata is still a base64 typed-array spec, so the id arrives undefined. Plotly itself
# has the decoded array: read the id there (customdata, as the map's contract says).
POINT_JS = """
function(ev) {
    if (!ev || !ev.points || !ev.points.length) { return null; }
    const p = ev.points[0];
    if (p.curveNumber !== 0) { return null; }
    const gd = document.querySelector('#map .js-plotly-plot');
    const trace = gd && gd._fullData && gd._fullData[0];
    let id = p.customdata;
    if ((id === undefined || id === null) && trace && trace.customdata) {
        id = trace.customdata[p.pointNumber];
    }
    if (id === undefined || id === null) { return null; }
    return {"id": Number(id), "bbox": p.bbox || null, "t": Date.now()};
}
"""


def _trigger() -> str | None:
    tid = callback_context.triggered_id
    return tid if isinstance(tid, str) else None


CAM_OUTPUTS = {
    "overlay": Output("img-overlay-heat", "src"),
    "heatmap": Output("img-heatmap", "src"),
    "download": Output("link-overlay", "href"),
    "status": Output("cam-status", "children"),
    "status_class": Output("cam-status", "className"),
    "slow_class": Output("cam-slow", "className"),
    "slow_text": Output("cam-slow-text", "children"),
    "start_disabled": Output("cam-start", "disabled"),
    "cancel_disabled": Output("cam-cancel", "disabled"),
    "progress": Output("cam-progress", "value"),
    "progress_text": Output("cam-progress-text", "children"),
    "poll_disabled": Output("job-poll", "disabled"),
}


def _dup(outputs: dict[str, Output]) -> dict[str, Output]:
    return {k: Output(o.component_id, o.component_property, allow_duplicate=True)
            for k, o in outputs.items()}


def register_callbacks(app: Dash, ctx: AppContext) -> None:
    view_states = [State("color-mode", "value"), State("hidden", "data"),
                   State("show-filter", "value"), State("conf-range", "value"),
                   State("filters", "data")]

    @app.callback(
        Output("map", "figure", allow_duplicate=True),
        Output("legend", "children"),
        Output("hidden", "data"),
        Input("color-mode", "value"),
        State("show-filter", "value"),
        State("conf-range", "value"),
        State("filters", "data"),
        prevent_initial_call=True,
    )
    def _on_mode(mode, show, conf, filters):
        return mode_update(ctx, mode, show, conf, filters)

    @app.callback(
        Output("map", "figure", allow_duplicate=True),
        Output({"type": "legend-item", "index": ALL}, "className"),
        Output("hidden", "data", allow_duplicate=True),
        Input({"type": "legend-item", "index": ALL}, "n_clicks"),
        Input("legend-all", "n_clicks"),
        Input("legend-none", "n_clicks"),
        Input("show-filter", "value"),
        Input("conf-range", "value"),
        Input("filters", "data"),
        State("color-mode", "value"),
        State("hidden", "data"),
        prevent_initial_call=True,
    )
    def _on_filter(_items, _all, _none, show, conf, filters, mode, hidden):
        tid = callback_context.triggered_id
        trigger = "legend-item" if isinstance(tid, dict) else _trigger()
        clicked = clicked_index(callback_context.triggered) if trigger == "legend-item" else None
        return filter_update(ctx, trigger, clicked, mode, hidden, show, conf, filters)

    @app.callback(
        Output("map", "figure", allow_duplicate=True),
        Input("point-size", "value"),
        Input("point-opacity", "value"),
        prevent_initial_call=True,
    )
    def _on_marker(size, opacity):
        trigger = _trigger()
        return F.marker_patch(size=size if trigger == "point-size" else None,
                              opacity=opacity if trigger == "point-opacity" else None)

    app.clientside_callback(POINT_JS, Output("hovered", "data"), Input("map", "hoverData"))
    app.clientside_callback(POINT_JS, Output("clicked", "data"), Input("map", "clickData"),
                            prevent_initial_call=True)

    @app.callback(
        Output("tip", "show"),
        Output("tip", "bbox"),
        Output("tip", "children"),
        Input("hovered", "data"),
        *view_states,
    )
    def _on_hover(hover, *view):
        return hover_update(ctx, hover, *view)

    # Box and lasso selections are handled in explore_callbacks.py: the page packs the
    # selected points into a bit set, so 100k selected points never travel as JSON.

    @app.callback(
        Output("selection", "data"),
        Output("url", "search"),
        Output("map", "figure", allow_duplicate=True),
        Input("clicked", "data"),
        Input("url", "search"),
        Input("detail-close", "n_clicks"),
        State("selection", "data"),
        State("map-dims", "value"),
        *view_states,
        prevent_initial_call="initial_duplicate",
    )
    def _on_select(click, search, close, current, dims, *view):
        triggered = {p.rsplit(".", 1)[0] for p in callback_context.triggered_prop_ids}
        if not close:
            triggered.discard("detail-close")
        return select_update(ctx, triggered, click, search, current, _view(ctx, *view), dims)

    @app.callback(
        output={
            "class": Output("detail", "className"),
            "head": Output("detail-head", "children"),
            "original": Output("img-original", "src"),
            "base": Output("img-overlay-base", "src"),
            "link": Output("link-original", "href"),
            "top5": Output("top5", "children"),
            "cls": Output("cam-class", "value"),
            "method": Output("cam-method", "value"),
        },
        inputs={"selection": Input("selection", "data")},
    )
    def _on_detail(selection):
        return detail_update(ctx, selection)

    @app.callback(
        Output("cam-class", "value", allow_duplicate=True),
        Input({"type": "top5", "index": ALL}, "n_clicks"),
        prevent_initial_call=True,
    )
    def _on_top5(_clicks):
        return top5_update(callback_context.triggered, len(ctx.class_names))

    @app.callback(
        Output({"type": "top5", "index": ALL}, "className"),
        Input("cam-class", "value"),
        State({"type": "top5", "index": ALL}, "id"),
        prevent_initial_call=True,
    )
    def _on_target(target, ids):
        return top5_classes([i["index"] for i in ids], target)

    @app.callback(
        output={**CAM_OUTPUTS, "search": Output("url", "search", allow_duplicate=True)},
        inputs={"selection": Input("selection", "data"), "cls": Input("cam-class", "value"),
                "method": Input("cam-method", "value")},
        prevent_initial_call=True,
    )
    def _on_cam(selection, cls, method):
        key = cam_key(ctx, selection, cls, method)
        out = cam_outputs(ctx, key, cam_update(ctx, key))
        if key is None:
            out["search"] = no_update
        else:
            pred = int(ctx.table["pred_index"].iat[key.image_id])
            out["search"] = format_url(key.image_id, key.target, key.method,
                                       default_target=pred)
        return out

    @app.callback(
        output=_dup(CAM_OUTPUTS),
        inputs={"start": Input("cam-start", "n_clicks"), "cancel": Input("cam-cancel", "n_clicks"),
                "poll": Input("job-poll", "n_intervals")},
        state={"selection": State("selection", "data"), "cls": State("cam-class", "value"),
               "method": State("cam-method", "value")},
        prevent_initial_call=True,
    )
    def _on_job(start, cancel, poll, selection, cls, method):
        return job_update(ctx, _trigger(), cam_key(ctx, selection, cls, method))

    @app.callback(
        Output("model-status", "children"),
        Output("model-status", "className"),
        Output("model-poll", "disabled"),
        Output("cam-method", "options"),
        Input("model-poll", "n_intervals"),
    )
    def _on_model_poll(_n):
        return model_status(ctx)

    # Overlay opacity is pure CSS on the heatmap layer: instant, no server round trip.
    app.clientside_callback(
        """
        function(opacity) {
            return {"opacity": opacity === null || opacity === undefined ? 0.55 : opacity};
        }
        """,
        Output("img-overlay-heat", "style"),
        Input("cam-opacity", "value"),
    )
