"""The page: header, controls + legend, the map, the detail panel. No callbacks here.

The style sheet lives in this module (``STYLE``) and is inlined into the page, so that it
ships with the package however featscope is installed (no assets folder to package).
"""

from __future__ import annotations

from typing import Any

from dash import dcc, html

from .context import AppContext
from .dock import (
    DOCK_STYLE,
    MAP_HINT,
    dims_control,
    dock,
    dock_stores,
    filter_controls,
    neighbours_section,
)
from .figures import (
    MODES,
    SHOW_FILTERS,
    ViewState,
    available_filters,
    available_modes,
    build_figure,
    default_mode,
    default_opacity,
    default_size,
    graph_config,
    legend,
    legend_rows,
)
from .panels import class_options, method_options

STYLE = """
:root {
  --fs-bg: #f5f6f8; --fs-panel: #ffffff; --fs-border: #e3e6eb; --fs-text: #1f2937;
  --fs-muted: #6b7280; --fs-accent: #2563eb; --fs-accent-soft: #e8effd;
  --fs-ok: #3b9a5c; --fs-wrong: #d6312b;
  --Dash-Fill-Interactive-Strong: #2563eb; --Dash-Fill-Interactive-Weak: #e8effd;
}
* { box-sizing: border-box; }
html, body { margin: 0; height: 100%; background: var(--fs-bg); color: var(--fs-text);
  font: 13px/1.45 Inter, "Segoe UI", system-ui, -apple-system, sans-serif; }
.fs-app { display: flex; flex-direction: column; height: 100vh; }
.topbar { display: flex; align-items: center; gap: 14px; padding: 0 18px; height: 52px;
  background: #111827; color: #f9fafb; flex: none; }
.brand { font-weight: 700; font-size: 17px; letter-spacing: .2px; }
.brand span { color: #93c5fd; }
.run-name { font-weight: 600; color: #e5e7eb; max-width: 28vw; overflow: hidden;
  text-overflow: ellipsis; white-space: nowrap; }
.chips { display: flex; gap: 8px; flex-wrap: nowrap; overflow: hidden; }
.chip { background: #1f2937; border: 1px solid #374151; color: #d1d5db; border-radius: 999px;
  padding: 2px 10px; font-size: 12px; white-space: nowrap; }
.model-status { margin-left: auto; font-size: 12px; color: #9ca3af; white-space: nowrap; }
.model-status.ready::before { content: "●"; color: #34d399; margin-right: 6px; }
.model-status.loading::before { content: "●"; color: #fbbf24; margin-right: 6px; }
.model-status.failed::before { content: "●"; color: #f87171; margin-right: 6px; }
.body { flex: 1; display: flex; min-height: 0; }
.sidebar { width: 250px; flex: none; background: var(--fs-panel);
  border-right: 1px solid var(--fs-border); padding: 14px 14px 10px; overflow-y: auto;
  display: flex; flex-direction: column; gap: 14px; }
.section-title { font-size: 11px; font-weight: 700; text-transform: uppercase;
  letter-spacing: .06em; color: var(--fs-muted); margin-bottom: 6px; }
.control { display: flex; flex-direction: column; }
.control .hint { color: var(--fs-muted); font-size: 11.5px; margin-top: 4px; }
.legend-box { display: flex; flex-direction: column; min-height: 120px; flex: 1; }
.legend-actions { display: flex; gap: 6px; margin-bottom: 6px; }
.link-btn { background: none; border: 1px solid var(--fs-border); border-radius: 6px;
  padding: 2px 8px; font-size: 11.5px; color: var(--fs-text); cursor: pointer; }
.link-btn:hover { background: var(--fs-accent-soft); border-color: #bfd3fb; }
.legend-list { overflow-y: auto; flex: 1; display: flex; flex-direction: column; gap: 1px; }
.legend-row { display: flex; align-items: center; gap: 8px; width: 100%; padding: 3px 6px;
  border: none; background: none; border-radius: 5px; cursor: pointer; font: inherit;
  color: inherit; text-align: left; }
.legend-row:hover { background: #f3f4f6; }
.legend-row.off { opacity: .38; }
.legend-row.off .swatch { background: transparent !important; outline: 1.5px solid #9ca3af;
  outline-offset: -1.5px; }
.swatch { width: 11px; height: 11px; border-radius: 3px; flex: none; }
.legend-name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; flex: 1; }
.legend-count { color: var(--fs-muted); font-variant-numeric: tabular-nums; font-size: 11.5px; }
.legend-note { color: var(--fs-muted); font-size: 11.5px; margin-top: 6px; }
.map-wrap { flex: 1; min-width: 0; position: relative; background: var(--fs-panel);
  margin: 10px; border: 1px solid var(--fs-border); border-radius: 10px; overflow: hidden; }
.map-graph { position: absolute; inset: 0; }
.detail { width: 44vw; max-width: 760px; min-width: 460px; flex: none;
  background: var(--fs-panel); border-left: 1px solid var(--fs-border); overflow-y: auto;
  padding: 14px 18px 18px; }
.detail.hidden { display: none; }
.detail-top { display: flex; align-items: flex-start; gap: 10px; }
.detail-head { flex: 1; min-width: 0; }
.detail-name { font-size: 16px; font-weight: 700; overflow: hidden; text-overflow: ellipsis;
  white-space: nowrap; }
.detail-meta { color: var(--fs-muted); font-size: 12px; }
.detail-path { color: var(--fs-muted); font: 11.5px/1.4 ui-monospace, Menlo, monospace;
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.facts { display: flex; flex-wrap: wrap; gap: 4px 18px; margin-top: 8px; }
.fact-key { color: var(--fs-muted); margin-right: 6px; }
.fact-val { font-weight: 600; }
.fact-conf { margin-left: 6px; color: var(--fs-muted); }
.badge { display: inline-block; margin-left: 8px; padding: 0 7px; border-radius: 999px;
  font-size: 11px; font-weight: 600; }
.badge-ok { background: #e3f4ea; color: var(--fs-ok); }
.badge-wrong { background: #fde6e5; color: var(--fs-wrong); }
.close-btn { border: none; background: #f3f4f6; border-radius: 6px; width: 28px; height: 28px;
  font-size: 16px; cursor: pointer; color: var(--fs-muted); flex: none; }
.close-btn:hover { background: #e5e7eb; color: var(--fs-text); }
.cam-controls { display: grid; grid-template-columns: 1.5fr 1fr 0.9fr; gap: 10px;
  margin: 14px 0 10px; align-items: end; }
.triptych { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 10px; }
.pane { margin: 0; display: flex; flex-direction: column; gap: 4px; min-width: 0; }
.pane-box { position: relative; background: #eef0f3 repeating-conic-gradient(#e6e8ec 0 25%,
  #f2f3f5 0 50%) 50% / 16px 16px; border-radius: 8px; overflow: hidden; aspect-ratio: 1 / 1;
  display: flex; align-items: center; justify-content: center; }
.pane-box img { position: absolute; inset: 0; width: 100%; height: 100%;
  object-fit: contain; display: block; }
.pane-box img:not([src]) { visibility: hidden; }
.pane figcaption { font-size: 11.5px; color: var(--fs-muted); display: flex;
  justify-content: space-between; }
.pane figcaption a { color: var(--fs-accent); text-decoration: none; }
.caption-note { margin-left: 8px; text-align: right; }
.cam-status { margin-top: 8px; font-size: 12px; color: var(--fs-muted); min-height: 1.2em; }
.cam-status.error { color: var(--fs-wrong); }
.slow { margin-top: 10px; padding: 10px 12px; border: 1px solid #f3d9a4; background: #fff8e8;
  border-radius: 8px; display: flex; flex-direction: column; gap: 8px; }
.slow.hidden { display: none; }
.slow-actions { display: flex; align-items: center; gap: 10px; }
.slow progress { flex: 1; height: 10px; }
.btn { border: 1px solid var(--fs-accent); background: var(--fs-accent); color: white;
  border-radius: 6px; padding: 4px 12px; cursor: pointer; font-size: 12.5px; }
.btn.secondary { background: white; color: var(--fs-text); border-color: var(--fs-border); }
.btn:disabled { opacity: .45; cursor: default; }
.top5-title { margin: 16px 0 6px; }
.top5 { display: flex; flex-direction: column; gap: 4px; }
.top5-row { position: relative; display: flex; align-items: center; gap: 8px; width: 100%;
  border: 1px solid var(--fs-border); background: white; border-radius: 6px; padding: 4px 8px;
  cursor: pointer; text-align: left; font: inherit; color: inherit; overflow: hidden; }
.top5-row:hover { border-color: #bfd3fb; }
.top5-row.active { border-color: var(--fs-accent); box-shadow: 0 0 0 1px var(--fs-accent) inset; }
.top5-row .bar { position: absolute; left: 0; top: 0; bottom: 0; background: var(--fs-accent-soft); }
.top5-row .bar-name, .top5-row .bar-pct { position: relative; }
.top5-row .bar-name { flex: 1; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.top5-row .bar-pct { font-variant-numeric: tabular-nums; color: var(--fs-muted); }
.empty-hint { color: var(--fs-muted); font-size: 12px; }
.tip { display: flex; flex-direction: column; gap: 2px; max-width: 200px; font-size: 12px; }
.tip-thumb { max-width: 128px; max-height: 128px; border-radius: 4px; align-self: center;
  margin-bottom: 4px; background: #eee; }
.tip-name { font-weight: 600; overflow-wrap: anywhere; }
.tip-key { color: var(--fs-muted); }
.tip-conf { color: var(--fs-muted); }
""" + DOCK_STYLE

INDEX_STRING = """<!DOCTYPE html>
<html>
  <head>
    {%metas%}
    <title>{%title%}</title>
    {%favicon%}
    {%css%}
    <style>__STYLE__</style>
  </head>
  <body>
    {%app_entry%}
    <footer>
      {%config%}
      {%scripts%}
      {%renderer%}
    </footer>
  </body>
</html>
""".replace("__STYLE__", STYLE)


def _control(title: str, *children: Any, hint: str | None = None, **kw: Any) -> html.Div:
    body = [html.Div(title, className="section-title"), *children]
    if hint:
        body.append(html.Div(hint, className="hint"))
    return html.Div(body, className="control", **kw)


def _header(ctx: AppContext) -> html.Header:
    meta = ctx.run.meta
    data = ctx.data
    chips = [f"{ctx.n:,} images", f"{len(ctx.class_names):,} classes",
             str(meta.get("model", {}).get("name", "model"))]
    if data.has_correct:
        known = data.correct >= 0
        acc = float((data.correct[known] == 1).mean())
        chips.append(f"accuracy {100 * acc:.1f}% ({int(known.sum()):,} labelled)")
    return html.Header(
        [
            html.Div(["feat", html.Span("scope")], className="brand"),
            html.Div(ctx.run.path.name, className="run-name", title=str(ctx.run.path)),
            html.Div([html.Span(c, className="chip") for c in chips], className="chips"),
            html.Div("model loading…", id="model-status", className="model-status loading"),
        ],
        className="topbar",
    )


def _sidebar(ctx: AppContext, mode: str) -> html.Aside:
    data = ctx.data
    entries, _ = legend(data, mode)
    filters = available_filters(data)
    controls: list[Any] = [
        dims_control(data),
        _control(
            "Colour by",
            dcc.RadioItems(
                id="color-mode",
                options=[{"label": MODES[m], "value": m} for m in available_modes(data)],
                value=mode,
            ),
        ),
    ]
    controls.append(
        _control(
            "Show",
            dcc.Dropdown(
                id="show-filter",
                options=[{"label": SHOW_FILTERS[f], "value": f} for f in filters],
                value="all",
                clearable=False,
                searchable=False,
            ),
            style={} if len(filters) > 1 else {"display": "none"},
        )
    )
    controls.append(filter_controls(data))
    controls += [
        _control(
            "Confidence range",
            dcc.RangeSlider(id="conf-range", min=0, max=1, step=0.01, value=[0, 1],
                            marks={0: "0", 0.5: "0.5", 1: "1"}, allow_direct_input=False,
                            tooltip={"placement": "bottom"}),
        ),
        _control(
            "Point size",
            dcc.Slider(id="point-size", min=1, max=16, step=1, value=default_size(ctx.n),
                       marks=None, allow_direct_input=False),
        ),
        _control(
            "Point opacity",
            dcc.Slider(id="point-opacity", min=0.1, max=1, step=0.05, value=default_opacity(ctx.n),
                       marks=None, allow_direct_input=False),
        ),
        html.Div(
            [
                html.Div("Legend", className="section-title"),
                html.Div(
                    [html.Button("Show all", id="legend-all", className="link-btn", n_clicks=0),
                     html.Button("Hide all", id="legend-none", className="link-btn",
                                 n_clicks=0)],
                    className="legend-actions",
                ),
                html.Div(legend_rows(entries), id="legend", className="legend-list"),
                html.Div(
                    "✕ marks misclassified images" if data.n_wrong else "",
                    className="legend-note",
                ),
            ],
            className="legend-box",
        ),
    ]
    return html.Aside(controls, className="sidebar")


def _method_options(ctx: AppContext) -> list[dict[str, Any]]:
    # The CAM module loads in the background; until then only the default is listed and
    # the model-status poll fills in the rest.
    module = ctx.cams.model.module_if_ready()
    if module is None:
        return [{"label": "Grad-CAM", "value": "gradcam"}]
    return method_options(module.METHODS, module.SLOW_METHODS)


def _detail(ctx: AppContext) -> html.Section:
    return html.Section(
        [
            html.Div(
                [
                    html.Div(id="detail-head", className="detail-head"),
                    html.Button("×", id="detail-close", className="close-btn", n_clicks=0,
                                title="Close"),
                ],
                className="detail-top",
            ),
            html.Div(
                [
                    _control("Explain class",
                             dcc.Dropdown(id="cam-class", options=class_options(ctx.class_names),
                                          clearable=False, optionHeight=30)),
                    _control("Method",
                             dcc.Dropdown(id="cam-method",
                                          options=_method_options(ctx),
                                          value="gradcam", clearable=False, searchable=False)),
                    _control("Overlay opacity",
                             dcc.Slider(id="cam-opacity", min=0, max=1, step=0.05, value=0.55,
                                        marks=None, allow_direct_input=False)),
                ],
                className="cam-controls",
            ),
            # A spinner over the panes while a CAM is being computed (not for cache hits).
            dcc.Loading(
                html.Div(
                    [
                        html.Figure(
                            [html.Div(html.Img(id="img-original", alt="original image"),
                                      className="pane-box"),
                             html.Figcaption([html.Span("Original"),
                                              html.A("full size", id="link-original",
                                                     target="_blank")])],
                            className="pane",
                        ),
                        html.Figure(
                            [
                                # Same geometry, both "contain"ed in one box: they line up exactly.
                                html.Div([html.Img(id="img-overlay-base", alt=""),
                                          html.Img(id="img-overlay-heat", alt="CAM overlay",
                                                   style={"opacity": 0.55})],
                                         className="pane-box"),
                                html.Figcaption([html.Span("Overlay"),
                                                 html.A("open", id="link-overlay", target="_blank")]),
                            ],
                            className="pane",
                        ),
                        html.Figure(
                            [html.Div(html.Img(id="img-heatmap", alt="CAM heatmap"),
                                      className="pane-box"),
                             html.Figcaption([html.Span("Heatmap"),
                                              html.Span("clear = outside crop",
                                                        className="caption-note")])],
                            className="pane",
                        ),
                    ],
                    className="triptych",
                ),
                target_components={"img-heatmap": "src"},
                delay_show=250,
                overlay_style={"visibility": "visible", "opacity": 0.55},
                type="circle",
                color="#2563eb",
            ),
            html.Div(id="cam-status", className="cam-status"),
            html.Div(
                [
                    html.Div(id="cam-slow-text"),
                    html.Div(
                        [
                            html.Button("Run", id="cam-start", className="btn", n_clicks=0),
                            html.Progress(id="cam-progress", value="0", max="1"),
                            html.Span(id="cam-progress-text", className="hint"),
                            html.Button("Cancel", id="cam-cancel", className="btn secondary",
                                        n_clicks=0, disabled=True),
                        ],
                        className="slow-actions",
                    ),
                ],
                id="cam-slow",
                className="slow hidden",
            ),
            html.Div("Top-5 predictions", className="section-title top5-title"),
            html.Div(id="top5", className="top5"),
            neighbours_section(),
        ],
        id="detail",
        className="detail hidden",
    )


def build_layout(ctx: AppContext) -> html.Div:
    """The whole page; the figure inside is built once, here, with the default view."""
    mode = default_mode(ctx.data)
    figure = build_figure(ctx.data, ViewState(mode=mode))
    return html.Div(
        [
            dcc.Location(id="url", refresh=False),
            dcc.Store(id="selection", data=None),
            dcc.Store(id="hidden", data=[]),
            dcc.Store(id="hovered", data=None),
            dcc.Store(id="clicked", data=None),
            dcc.Interval(id="job-poll", interval=400, disabled=True),
            dcc.Interval(id="model-poll", interval=1000, disabled=False),
            *dock_stores(),
            _header(ctx),
            html.Div(
                [
                    _sidebar(ctx, mode),
                    html.Div(
                        [
                            html.Main(
                                [
                                    dcc.Graph(id="map", figure=figure, config=graph_config(),
                                              className="map-graph", clear_on_unhover=True,
                                              style={"height": "100%", "width": "100%"}),
                                    dcc.Tooltip(id="tip", direction="right", zindex=20,
                                                background_color="rgba(255,255,255,0.97)",
                                                border_color="#d1d5db"),
                                    html.Div(MAP_HINT, id="map-hint", className="map-hint"),
                                ],
                                className="map-wrap",
                            ),
                            dock(ctx.data),
                        ],
                        className="center",
                    ),
                    _detail(ctx),
                ],
                className="body",
            ),
        ],
        className="fs-app",
    )
