"""Callbacks for finding images: selections and their gallery, exports, filters, suspects,
confusion matrix, nearest neighbours, the CAM gallery and the 3-D map.

As in callbacks.py, each ``*_update`` is a pure function of the app context and plain values
(unit-tested without a browser); ``register_explore_callbacks`` only wires component ids.
"""

from __future__ import annotations

import json
import time
from typing import Any

from dash import ALL, Dash, Input, Output, State, callback_context, html
from dash.exceptions import PreventUpdate

from . import figures as F
from . import gallery as G
from . import selection as S
from . import tables as T
from .callbacks import pattern_click
from .camgallery import (
    OK,
    CamGallery,
    clamp_limit,
    gallery_job,
    targets_for,
)
from .cams import CamKey
from .context import AppContext
from .dock import MAP_HINT
from .jobs import CANCELLED, DONE, FAILED, RUNNING
from .panels import fmt_seconds, parse_index

GALLERY_PAGE = 30
TILE_TYPES = ("gal-tile", "nb-tile", "camg-tile", "sus-row")


def view_of(ctx: AppContext, mode: Any, hidden: Any, show: Any, conf: Any,
            filters: Any) -> F.ViewState:
    return F.ViewState.from_inputs(ctx.data, mode, hidden, show, conf,
                                   filters if isinstance(filters, dict) else None)


def _clicked_image(ctx: AppContext, triggered: list[dict[str, Any]] | None
                   ) -> tuple[str, int] | None:
    hit = pattern_click(triggered)
    if hit is None or isinstance(hit[1], bool) or not isinstance(hit[1], int):
        return None
    image_id = parse_index(hit[1], ctx.n)
    return None if image_id is None else (hit[0], image_id)


# --------------------------------------------------------------------------------------
# Opening images from tiles and rows


def open_update(ctx: AppContext, triggered: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The ``clicked`` store for a click on a gallery, neighbour, CAM or suspects tile: the
    detail panel opens that image (``source`` lets it open even when filtered out)."""
    hit = _clicked_image(ctx, triggered)
    if hit is None or hit[0] not in TILE_TYPES:
        raise PreventUpdate
    return {"id": hit[1], "source": hit[0], "t": time.time()}


# --------------------------------------------------------------------------------------
# Making selections outside the map


def subset_update(
    ctx: AppContext,
    trigger: str | None,
    triggered: list[dict[str, Any]] | None,
    view: F.ViewState,
    *,
    confusion_click: dict | None = None,
    axes: dict | None = None,
    sus_sort: dict | None = None,
    sus_page: int | None = None,
) -> tuple[Any, Any]:
    """(selection spec, map Patch) for "Select all shown", "Clear", a confusion-matrix cell,
    a suspects row or "Select this page". The Patch shows the selection on the map as
    plotly shows a lasso (the rest dimmed)."""
    rev = int(time.time() * 1000) % (1 << 30)
    if trigger == "sel-clear":
        return None, F.highlight_patch(None, rev)
    if trigger == "sel-all":
        # Everything shown is selected: nothing to dim.
        return {"kind": "filters"}, F.highlight_patch(None, rev)
    if trigger == "confusion":
        cell = T.clicked_cell(confusion_click, axes)
        if cell is None:
            raise PreventUpdate
        spec = {"kind": "cell", "label": cell[0], "pred": cell[1]}
    elif trigger == "sus-select":
        sort = sus_sort or T.default_sort(ctx.table)
        page = T.suspects_page(ctx.table, F.visible_mask(ctx.data, view), sort.get("by"),
                               bool(sort.get("desc", True)), sus_page)
        spec = {"kind": "ids", "ids": [int(i) for i in page.rows["id"]], "source": "suspects"}
    elif trigger == "sus-row":
        hit = _clicked_image(ctx, triggered)
        if hit is None:
            raise PreventUpdate
        spec = {"kind": "ids", "ids": [hit[1]], "source": "suspects"}
    else:
        raise PreventUpdate
    ids = S.selected_ids(spec, ctx.data, view)
    return spec, F.highlight_patch(ids, rev)


def lasso_spec(ctx: AppContext, selected_points: list[int] | None, shape: str = "lasso"
               ) -> dict[str, Any] | None:
    """What the page sends for a box or lasso around these point ids (the Python twin of
    ``SELECT_HOOK_JS``, for tests and notebooks)."""
    if selected_points is None:
        return None
    return {"kind": "map", "bits": S.encode_bits(selected_points, ctx.n), "n": ctx.n,
            "shape": shape, "count": len(selected_points)}


# --------------------------------------------------------------------------------------
# The selection card: summary, composition, gallery


def selection_update(
    ctx: AppContext,
    spec: Any,
    view: F.ViewState,
    page: int | None,
    order: str | None,
    trigger: str | None,
    page_size: int = GALLERY_PAGE,
) -> dict[str, Any]:
    """Everything the selection card shows for a selection under the current filters."""
    ids = S.selected_ids(spec, ctx.data, view)
    if ids is None:
        return {
            "source": "",
            "summary": "Nothing selected yet: draw a lasso or box on the map, click a "
                       "confusion cell or a suspect, or select all shown.",
            "composition": [],
            "gallery": [],
            "pager": "",
            "pager_class": "pager pane-hidden",
            "prev_disabled": True,
            "next_disabled": True,
            "page": 0,
            "clear_disabled": True,
            "export_disabled": True,
            "card_class": "card card-empty",
        }
    ordered = S.order_ids(ids, ctx.table, order)
    pg = S.paginate(ordered, S.step_page(page, trigger, "gal-prev", "gal-next"), page_size)
    summary = S.summarize(ctx.data, ids)
    hidden_by_filters = ""
    resolved = S.resolve(spec, ctx.data)
    if resolved is not None and int(resolved.sum()) > len(ids):
        hidden_by_filters = f" ({int(resolved.sum()) - len(ids):,} more hidden by the filters)"
    tiles = G.gallery_tiles(G.Tile.rows(ctx.table, pg.ids), ctx.thumb_url)
    return {
        "source": S.describe(spec),
        "summary": summary.text() + hidden_by_filters,
        "composition": G.composition_children(S.composition_of(ctx.data, ids)),
        "gallery": tiles or [html_empty("The filters hide every selected image.")],
        "pager": pg.text() if pg.total else "",
        "pager_class": "pager",
        "prev_disabled": pg.page <= 0,
        "next_disabled": pg.page >= pg.n_pages - 1,
        "page": pg.page,
        "clear_disabled": False,
        "export_disabled": not len(ids),
        "card_class": "card",
    }


def html_empty(text: str) -> Any:
    return html.Div(text, className="empty")


def export_update(ctx: AppContext, what: str | None, spec: Any, view: F.ViewState
                  ) -> dict[str, Any]:
    """dcc.Download data: the selection (as filtered) as CSV or as a list of paths."""
    ids = S.selected_ids(spec, ctx.data, view)
    if ids is None or not len(ids):
        raise PreventUpdate
    stem = f"{ctx.run.path.name}-selection-{len(ids)}"
    if what == "export-csv":
        return {"content": S.selection_csv(ctx.table, ids), "filename": f"{stem}.csv",
                "type": "text/csv", "base64": False}
    if what == "export-paths":
        return {"content": S.selection_paths(ctx.table, ids), "filename": f"{stem}-paths.txt",
                "type": "text/plain", "base64": False}
    raise PreventUpdate


# --------------------------------------------------------------------------------------
# Suspects and confusion


def suspects_update(
    ctx: AppContext,
    trigger: str | None,
    triggered: list[dict[str, Any]] | None,
    sort: dict | None,
    page: int | None,
    view: F.ViewState,
    current: dict | None,
) -> dict[str, Any]:
    """The suspects table: header (sortable), one page of rows, pager, sort and page."""
    table = ctx.table
    sort = sort or T.default_sort(table)
    if trigger == "sus-sort":
        hit = pattern_click(triggered)
        if hit is None or not isinstance(hit[1], str):
            raise PreventUpdate  # headers just rendered, not clicked
        sort = T.next_sort(sort, hit[1], table)
        page = 0
    elif trigger in ("sus-prev", "sus-next"):
        page = S.step_page(page, trigger, "sus-prev", "sus-next")
    elif trigger != "selection":
        page = 0  # filters changed: back to the top of the ranking
    pg = T.suspects_page(table, F.visible_mask(ctx.data, view), sort.get("by"),
                         bool(sort.get("desc", True)), page)
    cols = T.suspect_columns(table)
    current_id = current.get("id") if isinstance(current, dict) else None
    title = T.SUSPECT_COLUMNS[pg.by][1]
    return {
        "head": T.suspects_header(cols, pg.by, pg.desc),
        "body": T.suspects_rows(pg, current_id),
        "pager": pg.text(),
        "prev_disabled": pg.page <= 0,
        "next_disabled": pg.page >= pg.n_pages - 1,
        "sort": {"by": pg.by, "desc": pg.desc},
        "page": pg.page,
        "sub": f"ranked by {title} ({'highest' if pg.desc else 'lowest'} first)",
    }


def confusion_update(ctx: AppContext, view: F.ViewState) -> tuple[Any, Any, str]:
    """(heatmap figure, the axes' class names, note) for the images the filters show."""
    if not ctx.data.has_labels:
        raise PreventUpdate
    cv = T.confusion_view(ctx.data, F.visible_mask(ctx.data, view), ctx.class_names)
    return T.confusion_figure(cv), {"rows": cv.rows, "cols": cv.cols}, cv.note()


# --------------------------------------------------------------------------------------
# Detail panel: nearest neighbours


def neighbours_update(ctx: AppContext, selection: dict | None, k: Any) -> list[Any]:
    """The open image's nearest neighbours in feature space: a row of the stored table."""
    image_id = parse_index((selection or {}).get("id"), ctx.n)
    if image_id is None:
        return []
    k = int(k) if isinstance(k, int) and not isinstance(k, bool) else 12
    run = ctx.run
    nbs = G.neighbours_of(run.neighbor_index, run.neighbor_sims, ctx.table, image_id, k)
    me = G.Tile.rows(ctx.table, [image_id])[0]
    return G.neighbour_tiles(nbs, ctx.thumb_url, me)


# --------------------------------------------------------------------------------------
# CAM gallery


def fast_methods(ctx: AppContext) -> list[dict[str, str]] | None:
    """CAM methods fast enough for a gallery; None until the CAM module is imported."""
    module = ctx.cams.model.module_if_ready()
    if module is None:
        return None
    return [{"label": label, "value": key} for key, label in module.METHODS.items()
            if key not in module.SLOW_METHODS]


def _job_key(raw: Any) -> tuple | None:
    return tuple(raw) if isinstance(raw, list) and len(raw) == 2 else None


def camgallery_update(
    ctx: AppContext,
    trigger: str | None,
    spec: Any,
    view: F.ViewState,
    order: str | None,
    limit: Any,
    method: Any,
    explain: Any,
    job_ref: Any,
) -> dict[str, Any]:
    """Start, poll or cancel the CAM gallery of the selection's first ``limit`` images (in
    gallery order); a new selection cancels a running one."""
    key = _job_key(job_ref)
    if trigger == "camg-start":
        ids = S.selected_ids(spec, ctx.data, view)
        if ids is None or not len(ids):
            return _camg_idle("Select images first (lasso, confusion cell, suspects).")
        methods = {m["value"] for m in (fast_methods(ctx) or [{"value": "gradcam"}])}
        method = method if method in methods else "gradcam"
        chosen = S.order_ids(ids, ctx.table, order)[:clamp_limit(limit)]
        targets = targets_for(ctx.table, chosen, str(explain), ctx.class_names)
        gallery = ctx.galleries.put(CamGallery(
            [CamKey(int(i), int(t), str(method)) for i, t in zip(chosen, targets, strict=True)]))
        key = gallery.job_key
        # One group: starting a gallery cancels a running one; the same gallery again (done)
        # is not recomputed.
        ctx.jobs.start(key, gallery_job(ctx.cams, gallery), group="cam-gallery")
    elif trigger == "camg-cancel":
        if key is not None:
            ctx.jobs.cancel(key)
            job = ctx.jobs.get(key)
            if job is not None:
                job.wait(2.0)  # it stops between images: show the final state
    elif trigger != "camg-poll":  # the selection or the filters changed: start over
        if key is not None:
            ctx.jobs.cancel(key)
        ids = S.selected_ids(spec, ctx.data, view)
        n = 0 if ids is None else len(ids)
        lim = clamp_limit(limit)
        hint = (f"{n:,} selected: Compute shows the first {min(n, lim):,} in gallery order."
                if n else "Select images, then Compute to see their CAMs side by side.")
        return _camg_idle(hint)
    gallery = ctx.galleries.get(key) if key is not None else None
    job = ctx.jobs.get(key) if key is not None else None
    if gallery is None or job is None:
        return _camg_idle("")
    tiles = G.Tile.rows(ctx.table, [k.image_id for k in gallery.keys])
    srcs = [ctx.cam_url(k.image_id, k.target, k.method, "overlay") if s == OK else None
            for k, s in zip(gallery.keys, gallery.status, strict=True)]
    errors = [s if s not in (None, OK) else None for s in gallery.status]
    running = job.state == RUNNING
    total, done = len(gallery.keys), gallery.done
    label = _method_label(ctx, gallery.keys[0].method) if gallery.keys else ""
    if job.state == DONE:
        failed = sum(e is not None for e in errors)
        status = (f"{total} {label} overlays in {fmt_seconds(job.elapsed)}"
                  + (f" · {failed} failed" if failed else ""))
    elif job.state == CANCELLED:
        status = f"cancelled after {done} of {total}"
    elif job.state == FAILED:
        status = f"failed: {job.error}"
    else:
        status = f"{done} / {total} · {fmt_seconds(job.elapsed)}"
    return {
        "grid": G.cam_tiles(tiles, srcs, errors),
        "progress": str(done / total if total else 0),
        "status": status,
        "start_disabled": running,
        "cancel_disabled": not running,
        "poll_disabled": not running,
        "job": list(key),
    }


def _method_label(ctx: AppContext, method: str) -> str:
    module = ctx.cams.model.module_if_ready()
    return module.METHODS.get(method, method) if module is not None else method


def _camg_idle(status: str) -> dict[str, Any]:
    return {"grid": [], "progress": "0", "status": status, "start_disabled": False,
            "cancel_disabled": True, "poll_disabled": True, "job": None}


# --------------------------------------------------------------------------------------
# 3-D


def dims_update(ctx: AppContext, dims: Any, view: F.ViewState, size: Any, opacity: Any,
                selection: dict | None) -> tuple[dict[str, Any], str]:
    """(the whole map figure, hint) in 2-D or 3-D (only when the run has a 3-D map)."""
    three = dims == 3 and ctx.data.has_3d
    selected = parse_index((selection or {}).get("id"), ctx.n)
    fig = F.build_figure(ctx.data, view, size=size, opacity=opacity, selected=selected,
                         dims=3 if three else 2)
    hint = ("3-D: drag to rotate, scroll to zoom · click a point to open it · select images "
            "from the filters, suspects or confusion matrix" if three else MAP_HINT)
    return fig, hint


# --------------------------------------------------------------------------------------
# Wiring

# Box and lasso selections. The page packs the selected points into a bit set
# (np.packbits order, 12.5 kB for 100k points) and puts it in the "subset" store itself, by
# wrapping the map's ``emit``. Measured in Chromium on 80k selected of 100k points, dcc.Graph
# as it is takes 7.4 s from mouse-up to our code: it copies every point into selectedData,
# and it copies the new lasso outline (a "selections" relayout) into its figure prop, which
# re-renders all the points. So a user's selection (it has a range or a lasso outline)
# becomes the bit set, and Dash's listener gets the region without the points. On large maps
# (over ``BIG_MAP`` points) a relayout that only touches ``selections`` reaches plotly's own
# listeners but not Dash's: the dimming of unselected points stays, the outline goes at the
# next map update. Now ~2 s, most of it plotly's own selection in software WebGL. Zoom, pan,
# autoscale and 3-D camera moves on large maps go the same way: dcc.Graph would copy each into
# its figure prop and re-render every point (2.2 s per zoom at 100k points in software WebGL,
# against under 0.05 s for plotly's own redraw); uirevision keeps the view across later
# updates. Ids come from the decoded customdata (see callbacks.POINT_JS).
BIG_MAP = 10_000
SELECT_HOOK_JS = """
function(_figure) {
    const pack = (gd, ev) => {
        const t = gd._fullData[0], ids = t.customdata, n = ids.length;
        const bits = new Uint8Array((n + 7) >> 3);
        let count = 0;
        for (const p of ev.points) {
            if (p.curveNumber !== 0 || typeof p.pointNumber !== 'number') { continue; }
            const id = Number(ids[p.pointNumber]);
            if (!(id >= 0 && id < n) || bits[id >> 3] & (128 >> (id & 7))) { continue; }
            bits[id >> 3] |= 128 >> (id & 7);
            count++;
        }
        let bin = '';
        for (let i = 0; i < bits.length; i += 8192) {
            bin += String.fromCharCode.apply(null, bits.subarray(i, i + 8192));
        }
        return {kind: 'map', bits: btoa(bin), n: n, shape: ev.range ? 'box' : 'lasso',
                count: count};
    };
    // Relayouts that only move the view (zoom, pan, autoscale, 3-D camera) or the selection
    // outline: plotly has already drawn them; Dash has no use for them.
    const VIEW_ONLY = /^(selections|[xy]axis\\d*\\.(range|autorange)|scene\\.camera)/;
    const install = () => {
        const gd = document.querySelector('#map .js-plotly-plot');
        if (!gd || typeof gd.emit !== 'function') { return false; }
        if (gd.__featscopeSelect) { return true; }
        const emit = gd.emit;
        gd.__featscopeSelect = true;
        gd.emit = function(name, data) {
            const dc = window.dash_clientside;
            if (name === 'plotly_selected' && data && (data.range || data.lassoPoints)) {
                const t = gd._fullData && gd._fullData[0];
                if (t && t.customdata && data.points) {
                    dc.set_props('subset', {data: pack(gd, data)});
                }
                data = {range: data.range, lassoPoints: data.lassoPoints,
                        selections: data.selections, points: []};
            } else if (name === 'plotly_relayout' && data && Object.keys(data).length
                       && Object.keys(data).every(k => VIEW_ONLY.test(k))
                       && gd._fullData && gd._fullData[0]
                       && (gd._fullData[0].customdata || []).length > %(big)d) {
                if (gd._internalEv) { gd._internalEv.emit(name, data); }
                return true;
            } else if (name === 'plotly_deselect') {
                dc.set_props('subset', {data: null});
            }
            // (A selected event without a region is plotly re-announcing a selection the
            // server replaced (confusion cell, suspects): it passes through, ours stays.)
            return emit.call(this, name, data);
        };
        return true;
    };
    if (!install()) {
        const timer = setInterval(() => { if (install()) { clearInterval(timer); } }, 150);
    }
    return window.dash_clientside.no_update;
}
"""

FILTERS_JS = """
function(labels, preds, splits, name) {
    return {labels: labels || [], preds: preds || [], splits: splits || [], search: name || ''};
}
"""

# Tabs switch with CSS only: no server round trip, and the panes keep their content. A
# resize event lets a plotly graph that was hidden take its real size.
TABS_JS = """
function(a, b) {
    const trig = window.dash_clientside.callback_context.triggered;
    const second = trig.length && trig[0].prop_id.startsWith(%(second)s) && b;
    setTimeout(() => window.dispatchEvent(new Event('resize')), 30);
    return [second ? 'tab-btn' : 'tab-btn active', second ? 'tab-btn active' : 'tab-btn',
            second ? 'pane-hidden' : '', second ? '' : 'pane-hidden'];
}
"""


def _trigger() -> str | None:
    tid = callback_context.triggered_id
    if isinstance(tid, dict):
        return str(tid.get("type"))
    return tid if isinstance(tid, str) else None


def register_explore_callbacks(app: Dash, ctx: AppContext) -> None:
    view_inputs = [Input("color-mode", "value"), Input("hidden", "data"),
                   Input("show-filter", "value"), Input("conf-range", "value"),
                   Input("filters", "data")]
    view_states = [State(i.component_id, i.component_property) for i in view_inputs]

    app.clientside_callback(FILTERS_JS, Output("filters", "data"),
                            Input("filter-label", "value"), Input("filter-pred", "value"),
                            Input("filter-split", "value"), Input("filter-name", "value"),
                            prevent_initial_call=True)
    # Installed once (it waits for the graph); the hook survives Patches and new figures.
    app.clientside_callback(SELECT_HOOK_JS % {"big": BIG_MAP}, Output("map-hook", "data"),
                            Input("map-hook", "id"))
    for first, second, pane1, pane2 in (("tab-gallery", "tab-camg", "pane-gallery", "pane-camg"),
                                        ("tab-suspects", "tab-confusion", "pane-suspects",
                                         "pane-confusion")):
        app.clientside_callback(
            TABS_JS % {"second": json.dumps(second)},
            Output(first, "className"), Output(second, "className"),
            Output(pane1, "className"), Output(pane2, "className"),
            Input(first, "n_clicks"), Input(second, "n_clicks"),
            prevent_initial_call=True,
        )

    @app.callback(
        Output("subset", "data"),
        Output("map", "figure", allow_duplicate=True),
        Input("sel-all", "n_clicks"),
        Input("sel-clear", "n_clicks"),
        Input("confusion", "clickData"),
        Input({"type": "sus-row", "index": ALL}, "n_clicks"),
        Input("sus-select", "n_clicks"),
        State("conf-axes", "data"),
        State("sus-sort", "data"),
        State("sus-page", "data"),
        *view_states,
        prevent_initial_call=True,
    )
    def _on_subset(_all, _clear, cell, _rows, _page_btn, axes, sort, page, *view):
        return subset_update(ctx, _trigger(), callback_context.triggered, view_of(ctx, *view),
                             confusion_click=cell, axes=axes, sus_sort=sort, sus_page=page)

    @app.callback(
        Output("clicked", "data", allow_duplicate=True),
        Input({"type": "gal-tile", "index": ALL}, "n_clicks"),
        Input({"type": "nb-tile", "index": ALL}, "n_clicks"),
        Input({"type": "camg-tile", "index": ALL}, "n_clicks"),
        Input({"type": "sus-row", "index": ALL}, "n_clicks"),
        prevent_initial_call=True,
    )
    def _on_tile(*_clicks):
        return open_update(ctx, callback_context.triggered)

    @app.callback(
        output={
            "source": Output("sel-source", "children"),
            "summary": Output("sel-summary", "children"),
            "composition": Output("sel-composition", "children"),
            "gallery": Output("gallery", "children"),
            "pager": Output("gal-pager", "children"),
            "pager_class": Output("gal-pager-row", "className"),
            "prev_disabled": Output("gal-prev", "disabled"),
            "next_disabled": Output("gal-next", "disabled"),
            "page": Output("gal-page", "data"),
            "clear_disabled": Output("sel-clear", "disabled"),
            "export_disabled": Output("export-csv", "disabled"),
            "card_class": Output("selection-card", "className"),
        },
        inputs={"spec": Input("subset", "data"), "view": view_inputs,
                "prev": Input("gal-prev", "n_clicks"), "next": Input("gal-next", "n_clicks"),
                "order": Input("gal-order", "value")},
        state={"page": State("gal-page", "data")},
    )
    def _on_selection(spec, view, prev, next, order, page):  # noqa: A002 - Dash's names
        return selection_update(ctx, spec, view_of(ctx, *view), page, order, _trigger())

    app.clientside_callback(
        "function(d) { return d; }",
        Output("export-paths", "disabled"), Input("export-csv", "disabled"),
    )

    @app.callback(
        Output("download", "data"),
        Input("export-csv", "n_clicks"),
        Input("export-paths", "n_clicks"),
        State("subset", "data"),
        *view_states,
        prevent_initial_call=True,
    )
    def _on_export(_csv, _paths, spec, *view):
        return export_update(ctx, _trigger(), spec, view_of(ctx, *view))

    @app.callback(
        output={
            "head": Output("sus-head", "children"),
            "body": Output("sus-body", "children"),
            "pager": Output("sus-pager", "children"),
            "prev_disabled": Output("sus-prev", "disabled"),
            "next_disabled": Output("sus-next", "disabled"),
            "sort": Output("sus-sort", "data"),
            "page": Output("sus-page", "data"),
            "sub": Output("tables-sub", "children"),
        },
        inputs={"view": view_inputs,
                "sort_clicks": Input({"type": "sus-sort", "index": ALL}, "n_clicks"),
                "prev": Input("sus-prev", "n_clicks"), "next": Input("sus-next", "n_clicks"),
                "current": Input("selection", "data")},
        state={"sort": State("sus-sort", "data"), "page": State("sus-page", "data")},
    )
    def _on_suspects(view, sort_clicks, prev, next, current, sort, page):  # noqa: A002
        return suspects_update(ctx, _trigger(), callback_context.triggered, sort, page,
                               view_of(ctx, *view), current)

    if ctx.data.has_labels:
        @app.callback(
            Output("confusion", "figure"),
            Output("conf-axes", "data"),
            Output("conf-note", "children"),
            *view_inputs,
        )
        def _on_confusion(*view):
            return confusion_update(ctx, view_of(ctx, *view))

    @app.callback(
        Output("nb-grid", "children"),
        Input("selection", "data"),
        Input("nb-k", "value"),
    )
    def _on_neighbours(selection, k):
        return neighbours_update(ctx, selection, k)

    @app.callback(
        output={
            "grid": Output("camg-grid", "children"),
            "progress": Output("camg-progress", "value"),
            "status": Output("camg-status", "children"),
            "start_disabled": Output("camg-start", "disabled"),
            "cancel_disabled": Output("camg-cancel", "disabled"),
            "poll_disabled": Output("camg-poll", "disabled"),
            "job": Output("camg-job", "data"),
        },
        inputs={"start": Input("camg-start", "n_clicks"),
                "cancel": Input("camg-cancel", "n_clicks"),
                "poll": Input("camg-poll", "n_intervals"),
                "spec": Input("subset", "data"), "view": view_inputs},
        state={"order": State("gal-order", "value"), "limit": State("camg-limit", "value"),
               "method": State("camg-method", "value"),
               "explain": State("camg-explain", "value"), "job": State("camg-job", "data")},
        prevent_initial_call=True,
    )
    def _on_camg(start, cancel, poll, spec, view, order, limit, method, explain, job):
        return camgallery_update(ctx, _trigger(), spec, view_of(ctx, *view), order, limit,
                                 method, explain, job)

    @app.callback(
        Output("camg-method", "options"),
        Input("model-poll", "n_intervals"),
    )
    def _on_camg_methods(_n):
        options = fast_methods(ctx)
        if options is None:
            raise PreventUpdate
        return options

    @app.callback(
        Output("map", "figure", allow_duplicate=True),
        Output("map-hint", "children"),
        Input("map-dims", "value"),
        State("point-size", "value"),
        State("point-opacity", "value"),
        State("selection", "data"),
        *view_states,
        prevent_initial_call=True,
    )
    def _on_dims(dims, size, opacity, selection, *view):
        return dims_update(ctx, dims, view_of(ctx, *view), size, opacity, selection)

