"""Layout of the "finding" parts of the page: the filters in the sidebar, the dock under the
map (selection gallery, CAM gallery, suspects table, confusion matrix) and the nearest
neighbours in the detail panel. Static components only; callbacks fill them.
"""

from __future__ import annotations

from typing import Any

from dash import dcc, html

from .camgallery import DEFAULT_LIMIT, MAX_LIMIT
from .figures import UNLABELLED, MapData
from .selection import ORDERS

DOCK_STYLE = """
.center { flex: 1; min-width: 0; display: flex; flex-direction: column; }
.center .map-wrap { flex: 1 1 55%; min-height: 260px; margin-bottom: 0; }
.map-hint { position: absolute; left: 12px; bottom: 8px; font-size: 11.5px;
  color: var(--fs-muted); pointer-events: none; background: rgba(255,255,255,.85);
  padding: 1px 6px; border-radius: 4px; }
.dock { flex: 0 0 44%; min-height: 240px; display: grid; gap: 10px; padding: 10px;
  grid-template-columns: repeat(auto-fit, minmax(400px, 1fr)); overflow-y: auto; }
.card { background: var(--fs-panel); border: 1px solid var(--fs-border); border-radius: 10px;
  display: flex; flex-direction: column; min-height: 300px; min-width: 0; overflow: hidden; }
.card.card-empty { min-height: 118px; }
.card-head { display: flex; align-items: center; gap: 8px; padding: 8px 12px 6px;
  border-bottom: 1px solid var(--fs-border); flex-wrap: wrap; }
.card-title { font-weight: 700; font-size: 13px; white-space: nowrap; }
.card-sub { color: var(--fs-muted); font-size: 12px; flex: 1; min-width: 0; overflow: hidden;
  text-overflow: ellipsis; white-space: nowrap; }
.card-body { flex: 1; min-height: 0; overflow-y: auto; padding: 8px 12px 10px; }
.tabs { display: flex; gap: 2px; }
.tab-btn { border: none; background: none; padding: 3px 10px; border-radius: 6px;
  font: inherit; font-weight: 600; color: var(--fs-muted); cursor: pointer; }
.tab-btn:hover { background: #f3f4f6; }
.tab-btn.active { background: var(--fs-accent-soft); color: var(--fs-accent); }
.pane-hidden { display: none !important; }
.toolbar { display: flex; align-items: flex-start; gap: 8px; margin-bottom: 6px; }
.toolbar .actions { display: flex; gap: 5px; flex: none; }
.sel-summary { font-size: 12px; color: var(--fs-text); flex: 1; min-width: 0; }
.comp { display: grid; grid-template-columns: 1fr 1fr; gap: 4px 16px; margin-bottom: 8px; }
.comp-col { display: flex; flex-direction: column; gap: 2px; min-width: 0; }
.comp-title { font-size: 10.5px; font-weight: 700; text-transform: uppercase;
  letter-spacing: .05em; color: var(--fs-muted); }
.comp-row { position: relative; display: flex; gap: 6px; padding: 0 4px; font-size: 11.5px;
  border-radius: 3px; overflow: hidden; }
.comp-bar { position: absolute; left: 0; top: 0; bottom: 0; background: var(--fs-accent-soft); }
.comp-name, .comp-count { position: relative; }
.comp-name { flex: 1; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.comp-count { color: var(--fs-muted); font-variant-numeric: tabular-nums; }
.comp-more { font-size: 11px; color: var(--fs-muted); padding-left: 4px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(96px, 1fr)); gap: 8px; }
.tile { display: flex; flex-direction: column; gap: 2px; padding: 4px; border-radius: 7px;
  border: 1px solid var(--fs-border); background: white; cursor: pointer; font: inherit;
  color: inherit; text-align: left; min-width: 0; }
.tile:hover { border-color: #93b4f3; box-shadow: 0 1px 4px rgba(37,99,235,.15); }
.tile.wrong { border-color: #f3b4b1; }
.tile-box { aspect-ratio: 1 / 1; background: #eef0f3; border-radius: 5px; overflow: hidden;
  display: flex; align-items: center; justify-content: center; }
.tile-img { width: 100%; height: 100%; object-fit: cover; display: block; }
.cam-box .tile-img { object-fit: contain; }
.tile-wait { color: var(--fs-muted); font-size: 18px; }
.tile-wait.error { color: var(--fs-wrong); font-size: 12px; }
.tile-name { font-size: 11px; font-weight: 600; overflow: hidden; text-overflow: ellipsis;
  white-space: nowrap; }
.tile-label, .tile-sim { font-size: 10.5px; overflow: hidden; text-overflow: ellipsis;
  white-space: nowrap; line-height: 1.3; }
.tile-labels .k, .tile-sim .k { color: var(--fs-muted); }
.tile.wrong .pred { color: var(--fs-wrong); font-weight: 600; }
.tile-sim .sim { font-variant-numeric: tabular-nums; font-weight: 600; }
.nb-tile.other-label { border-color: #f3d9a4; background: #fffaf0; }
.pager { display: flex; align-items: center; gap: 6px; margin-top: 8px; font-size: 12px;
  color: var(--fs-muted); position: sticky; bottom: -10px; background: white;
  padding: 6px 0 2px; z-index: 2; }
.pager .link-btn:disabled { opacity: .4; cursor: default; }
.empty { color: var(--fs-muted); font-size: 12px; padding: 6px 0; }
.grid .empty { grid-column: 1 / -1; }
.sus-table { width: 100%; border-collapse: collapse; font-size: 11.5px; table-layout: fixed; }
.sus-table th { position: sticky; top: 0; background: white; z-index: 1; text-align: left;
  border-bottom: 1px solid var(--fs-border); padding: 0; }
.th-btn { width: 100%; border: none; background: none; font: inherit; font-weight: 700;
  font-size: 10.5px; line-height: 1.2; color: var(--fs-muted); text-align: left;
  padding: 4px 4px; cursor: pointer; }
.th-btn:hover { color: var(--fs-text); }
.th-btn.sorted { color: var(--fs-accent); }
.sus-table td { padding: 3px 4px; border-bottom: 1px solid #f1f2f4; white-space: nowrap;
  overflow: hidden; text-overflow: ellipsis; font-variant-numeric: tabular-nums; }
.sus-row { cursor: pointer; }
.sus-row:hover td { background: #f5f8ff; }
.sus-row.wrong .col-pred { color: var(--fs-wrong); font-weight: 600; }
.sus-row.current td { background: var(--fs-accent-soft); }
.sus-table .col-name { width: 23%; }
.sus-table .col-label, .sus-table .col-pred { width: 12%; }
.sus-table .col-confidence { width: 9%; }
.sus-table [class*="col-score_"] { width: 11%; }
.conf-graph { height: 100%; min-height: 220px; }
.conf-note { font-size: 11.5px; color: var(--fs-muted); margin-bottom: 4px; }
.camg-controls { display: flex; align-items: end; gap: 10px; flex-wrap: wrap; margin-bottom: 8px; }
.camg-controls .control { min-width: 120px; }
.camg-controls input { width: 70px; }
.camg-progress { display: flex; align-items: center; gap: 8px; margin-bottom: 8px;
  font-size: 12px; color: var(--fs-muted); }
.camg-progress progress { flex: 1; height: 10px; }
.filters { display: flex; flex-direction: column; gap: 8px; }
.filters .control .section-title { margin-bottom: 3px; }
.filter-input { width: 100%; border: 1px solid var(--fs-border); border-radius: 6px;
  padding: 5px 8px; font: inherit; }
.filter-actions { display: flex; gap: 6px; }
.nb-head { display: flex; align-items: center; gap: 10px; margin: 16px 0 6px; }
.nb-head .section-title { margin: 0; }
.nb-k { width: 130px; }
.nb-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(92px, 1fr)); gap: 8px; }
"""

MAP_HINT = "Lasso or box (toolbar, top right) selects images · click one to open it"


def _control(title: str, *children: Any, **kw: Any) -> html.Div:
    return html.Div([html.Div(title, className="section-title"), *children],
                    className="control", **kw)


def class_filter_options(data: MapData, names: list[str]) -> list[dict[str, Any]]:
    """Dropdown options for a class filter: the classes that occur, by index into the map's
    vocabulary (so that any class name, however odd, round-trips)."""
    index = {c: i for i, c in enumerate(data.vocab)}
    return [{"label": c, "value": index[c]} for c in names if c in index]


def filter_controls(data: MapData) -> html.Div:
    """True class, predicted class, split and file-name filters (the sidebar's existing
    "Show" and confidence controls are the others)."""
    labels = [data.vocab[i] for i in sorted(set(data.label_code[data.label_code >= 0].tolist()))]
    preds = [data.vocab[i] for i in sorted(set(data.pred_code.tolist()))]
    label_opts = class_filter_options(data, labels)
    if data.has_unlabelled and data.has_labels:
        label_opts.append({"label": UNLABELLED, "value": -1})
    split_opts = [{"label": s, "value": i} for i, s in enumerate(data.splits)]
    if data.has_splits and data.split_code is not None and (data.split_code < 0).any():
        split_opts.append({"label": "(none)", "value": -1})
    hidden = {"display": "none"}
    return html.Div(
        [
            _control("True class",
                     dcc.Dropdown(id="filter-label", options=label_opts, value=[], multi=True,
                                  placeholder="any", optionHeight=28),
                     style={} if data.has_labels else hidden),
            _control("Predicted class",
                     dcc.Dropdown(id="filter-pred", options=class_filter_options(data, preds),
                                  value=[], multi=True, placeholder="any", optionHeight=28)),
            _control("Split",
                     dcc.Dropdown(id="filter-split", options=split_opts, value=[], multi=True,
                                  placeholder="any", searchable=False),
                     style={} if data.has_splits else hidden),
            _control("File name",
                     dcc.Input(id="filter-name", type="search", value="", debounce=0.35,
                               placeholder="contains… (* and ? work)",
                               className="filter-input", autoComplete="off")),
        ],
        className="filters",
    )


def _tab(label: str, tab_id: str, active: bool = False) -> html.Button:
    return html.Button(label, id=tab_id, className="tab-btn" + (" active" if active else ""),
                       n_clicks=0)


def selection_card() -> html.Section:
    return html.Section(
        [
            html.Div(
                [
                    html.Div("Selection", className="card-title"),
                    html.Div("", id="sel-source", className="card-sub"),
                    html.Div([_tab("Images", "tab-gallery", True),
                              _tab("Grad-CAMs", "tab-camg")], className="tabs"),
                ],
                className="card-head",
            ),
            html.Div(
                [
                    html.Div(
                        [
                            html.Div(id="sel-summary", className="sel-summary"),
                            html.Div(
                                [
                                    html.Button("All shown", id="sel-all", className="link-btn",
                                                n_clicks=0,
                                                title="Select every image the filters show"),
                                    html.Button("Clear", id="sel-clear", className="link-btn",
                                                n_clicks=0, disabled=True),
                                    html.Button("⤓ CSV", id="export-csv", className="link-btn",
                                                n_clicks=0, disabled=True,
                                                title="Download the selection as CSV: id, "
                                                      "path, label, pred, confidence, x, y"),
                                    html.Button("⤓ Paths", id="export-paths",
                                                className="link-btn", n_clicks=0, disabled=True,
                                                title="Download the selected files' paths, "
                                                      "one per line"),
                                ],
                                className="actions",
                            ),
                            dcc.Download(id="download"),
                        ],
                        className="toolbar",
                    ),
                    html.Div(id="sel-composition", className="comp"),
                    html.Div(
                        [
                            html.Div(
                                [
                                    html.Div(id="gallery", className="grid"),
                                    html.Div(
                                        [
                                            html.Button("‹ Prev", id="gal-prev",
                                                        className="link-btn", n_clicks=0,
                                                        disabled=True),
                                            html.Span(id="gal-pager"),
                                            html.Button("Next ›", id="gal-next",
                                                        className="link-btn", n_clicks=0,
                                                        disabled=True),
                                            html.Span(className="spacer"),
                                            dcc.Dropdown(
                                                id="gal-order",
                                                options=[{"label": v, "value": k}
                                                         for k, v in ORDERS.items()],
                                                value="id", clearable=False, searchable=False,
                                                style={"width": "190px"},
                                            ),
                                        ],
                                        className="pager",
                                        id="gal-pager-row",
                                    ),
                                ],
                                id="pane-gallery",
                            ),
                            html.Div(
                                [
                                    html.Div(
                                        [
                                            _control("Method",
                                                     dcc.Dropdown(
                                                         id="camg-method",
                                                         options=[{"label": "Grad-CAM",
                                                                   "value": "gradcam"}],
                                                         value="gradcam", clearable=False,
                                                         searchable=False)),
                                            _control("Explain",
                                                     dcc.Dropdown(
                                                         id="camg-explain",
                                                         options=[
                                                             {"label": "predicted class",
                                                              "value": "pred"},
                                                             {"label": "true class",
                                                              "value": "label"}],
                                                         value="pred", clearable=False,
                                                         searchable=False)),
                                            _control("Images",
                                                     dcc.Input(id="camg-limit", type="number",
                                                               min=1, max=MAX_LIMIT, step=1,
                                                               value=DEFAULT_LIMIT,
                                                               className="filter-input")),
                                            html.Button("Compute", id="camg-start",
                                                        className="btn", n_clicks=0),
                                            html.Button("Cancel", id="camg-cancel",
                                                        className="btn secondary", n_clicks=0,
                                                        disabled=True),
                                        ],
                                        className="camg-controls",
                                    ),
                                    html.Div(
                                        [html.Progress(id="camg-progress", value="0", max="1"),
                                         html.Span(id="camg-status")],
                                        className="camg-progress",
                                    ),
                                    html.Div(id="camg-grid", className="grid"),
                                    dcc.Store(id="camg-job", data=None),
                                    dcc.Interval(id="camg-poll", interval=500, disabled=True),
                                ],
                                id="pane-camg",
                                className="pane-hidden",
                            ),
                        ],
                    ),
                ],
                className="card-body",
            ),
        ],
        className="card",
        id="selection-card",
    )


def tables_card(has_labels: bool) -> html.Section:
    return html.Section(
        [
            html.Div(
                [
                    html.Div([_tab("Suspects", "tab-suspects", True),
                              _tab("Confusion", "tab-confusion")], className="tabs"),
                    html.Div("", id="tables-sub", className="card-sub"),
                ],
                className="card-head",
            ),
            html.Div(
                [
                    html.Div(
                        [
                            html.Table(
                                [html.Thead(id="sus-head"), html.Tbody(id="sus-body")],
                                className="sus-table",
                            ),
                            html.Div(
                                [
                                    html.Button("‹ Prev", id="sus-prev", className="link-btn",
                                                n_clicks=0, disabled=True),
                                    html.Span(id="sus-pager"),
                                    html.Button("Next ›", id="sus-next", className="link-btn",
                                                n_clicks=0, disabled=True),
                                    html.Span(className="spacer"),
                                    html.Button("Select this page", id="sus-select",
                                                className="link-btn", n_clicks=0,
                                                title="Put this page's images in the selection"),
                                ],
                                className="pager",
                            ),
                            dcc.Store(id="sus-sort", data=None),
                            dcc.Store(id="sus-page", data=0),
                        ],
                        id="pane-suspects",
                    ),
                    html.Div(
                        [
                            html.Div(id="conf-note", className="conf-note"),
                            dcc.Graph(id="confusion", className="conf-graph",
                                      config={"displayModeBar": False, "responsive": True},
                                      style={"height": "calc(100% - 20px)"}),
                            dcc.Store(id="conf-axes", data=None),
                        ]
                        if has_labels else
                        [html.Div("No labels in this run: no confusion matrix.",
                                  className="empty"),
                         dcc.Graph(id="confusion", style={"display": "none"}),
                         html.Div(id="conf-note", style={"display": "none"}),
                         dcc.Store(id="conf-axes", data=None)],
                        id="pane-confusion",
                        className="pane-hidden",
                        style={"height": "100%"},
                    ),
                ],
                className="card-body",
            ),
        ],
        className="card",
        id="tables-card",
    )


def dock(data: MapData) -> html.Div:
    """Under the map: the selection (gallery, CAMs) beside the suspects and confusion."""
    return html.Div([selection_card(), tables_card(data.has_labels)], className="dock")


def dock_stores() -> list[Any]:
    return [
        dcc.Store(id="subset", data=None),  # the selection spec (selection.py)
        dcc.Store(id="map-hook", data=None),  # output of the box/lasso hook (unused)
        dcc.Store(id="filters", data={}),  # class / split / name filters, combined
        dcc.Store(id="gal-page", data=0),
    ]


def neighbours_section() -> html.Div:
    return html.Div(
        [
            html.Div(
                [html.Div("Nearest neighbours", className="section-title",
                          title="Cosine similarity in the model's full feature space "
                                "(not distance on the map)"),
                 dcc.Dropdown(id="nb-k", options=[{"label": f"{k} nearest", "value": k}
                                                  for k in (6, 12, 18, 30)],
                              value=12, clearable=False, searchable=False, className="nb-k")],
                className="nb-head",
            ),
            html.Div(id="nb-grid", className="nb-grid"),
        ],
    )


def dims_control(data: MapData) -> html.Div:
    """2-D / 3-D switch, shown only when the run stores a 3-D projection."""
    return html.Div(
        [html.Div("Map", className="section-title"),
         dcc.RadioItems(id="map-dims", options=[{"label": "2-D", "value": 2},
                                                 {"label": "3-D", "value": 3}],
                        value=2, inline=True)],
        className="control",
        style={} if data.has_3d else {"display": "none"},
    )

