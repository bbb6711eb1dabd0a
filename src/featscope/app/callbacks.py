"""Dash callbacks: thin wrappers around the pure ``*_update`` functions below.

Each ``*_update`` takes the app context and plain values and returns plain values (or a
``Patch``), so it is unit-tested without a browser; ``register_callbacks`` only wires ids.
"""

from __future__ import annotations

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

VIEW_INPUTS = ("color-mode", "legend", "show-filter", "conf-range")


def _view(ctx: AppContext, mode, legend_value, show, conf) -> F.ViewState:
    return F.ViewState.from_inputs(ctx.data, mode, legend_value, show, conf)


# --------------------------------------------------------------------------------------
# Map: colour mode, legend, filters, size, opacity


def view_update(
    ctx: AppContext, trigger: str | None, mode: str | None, legend_value: list[str] | None,
    show: str | None, conf: list[float] | None,
) -> tuple[Any, Any, Any]:
    """(figure Patch, legend options, legend value) after a colour/legend/filter change."""
    data = ctx.data
    if trigger in ("color-mode", "legend-all"):
        entries, _ = F.legend(data, F.ViewState.from_inputs(data, mode, None, show, conf).mode)
        value = [e.key for e in entries]
        view = _view(ctx, mode, value, show, conf)
        options = F.legend_options(entries) if trigger == "color-mode" else no_update
        return F.color_patch(data, view), options, value
    if trigger == "legend-none":
        view = _view(ctx, mode, [], show, conf)
        return F.color_patch(data, view), no_update, []
    view = _view(ctx, mode, legend_value, show, conf)
    return F.color_patch(data, view), no_update, no_update


def hover_update(
    ctx: AppContext, hover: dict | None, mode, legend_value, show, conf
) -> tuple[bool, Any, Any]:
    """(show, bbox, children) of the tooltip for a hovered point; hidden points show none."""
    target = hover_target(hover, ctx.n)
    if target is None:
        return False, no_update, no_update
    image_id, bbox = target
    if not F.is_visible(ctx.data, _view(ctx, mode, legend_value, show, conf), image_id):
        return False, no_update, no_update
    info = ImageInfo.from_table(ctx.table, image_id)
    return True, bbox, tooltip_children(info, ctx.thumb_url(image_id))


# --------------------------------------------------------------------------------------
# Selection: click, URL, close


def select_update(
    ctx: AppContext, trigger: str | None, click: dict | None, search: str | None,
    current: dict | None, view: F.ViewState,
) -> tuple[Any, Any, Any]:
    """(selection store, url search, ring Patch). Selection: {id, cls, method} or None."""
    if trigger == "detail-close":
        return None, "", F.selection_patch(ctx.data, None)
    if trigger == "map":
        image_id = click_target(click, ctx.n)
        if image_id is None or not F.is_visible(ctx.data, view, image_id):
            raise PreventUpdate
        sel = {"id": image_id, "cls": None, "method": None}
        return sel, format_url(image_id), F.selection_patch(ctx.data, image_id)
    # The URL changed (page load, back/forward, or our own update).
    module = ctx.cams.model.module_if_ready()
    methods = list(module.METHODS) if module is not None else None
    state = parse_url(search, ctx.n, len(ctx.class_names), methods)
    current_id = current.get("id") if current else None
    if state.image_id == current_id:
        raise PreventUpdate  # our own URL update, or nothing new
    if state.image_id is None:
        return None, no_update, F.selection_patch(ctx.data, None)
    sel = {"id": state.image_id, "cls": state.target, "method": state.method}
    return sel, no_update, F.selection_patch(ctx.data, state.image_id)


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


def top5_update(ctx: AppContext, triggered: list[dict], n_classes: int) -> int:
    """The class a top-5 row stands for, when it was really clicked (not just rendered)."""
    if not triggered or not triggered[0].get("value"):
        raise PreventUpdate
    prop = triggered[0].get("prop_id", "")
    try:
        import json

        idx = json.loads(prop.rsplit(".", 1)[0])["index"]
    except (ValueError, KeyError, TypeError) as exc:
        raise PreventUpdate from exc
    if parse_index(idx, n_classes) is None:
        raise PreventUpdate
    return int(idx)


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
    view_states = [State("color-mode", "value"), State("legend", "value"),
                   State("show-filter", "value"), State("conf-range", "value")]

    @app.callback(
        Output("map", "figure", allow_duplicate=True),
        Output("legend", "options"),
        Output("legend", "value"),
        Input("color-mode", "value"),
        Input("legend", "value"),
        Input("show-filter", "value"),
        Input("conf-range", "value"),
        Input("legend-all", "n_clicks"),
        Input("legend-none", "n_clicks"),
        prevent_initial_call=True,
    )
    def _on_view(mode, legend_value, show, conf, _all, _none):
        return view_update(ctx, _trigger(), mode, legend_value, show, conf)

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

    @app.callback(
        Output("tip", "show"),
        Output("tip", "bbox"),
        Output("tip", "children"),
        Input("map", "hoverData"),
        *view_states,
    )
    def _on_hover(hover, *view):
        return hover_update(ctx, hover, *view)

    @app.callback(
        Output("selection-summary", "children"),
        Input("map", "selectedData"),
        *view_states,
    )
    def _on_select_box(selected, *view):
        points = (selected or {}).get("points")
        return F.selection_summary(ctx.data, _view(ctx, *view), points)

    @app.callback(
        Output("selection", "data"),
        Output("url", "search"),
        Output("map", "figure", allow_duplicate=True),
        Input("map", "clickData"),
        Input("url", "search"),
        Input("detail-close", "n_clicks"),
        State("selection", "data"),
        *view_states,
        prevent_initial_call="initial_duplicate",
    )
    def _on_select(click, search, _close, current, *view):
        return select_update(ctx, _trigger(), click, search, current, _view(ctx, *view))

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
        return top5_update(ctx, callback_context.triggered, len(ctx.class_names))

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
