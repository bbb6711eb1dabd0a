"""The map figure and everything that changes it: pure functions of the run's table.

Design (why it looks like this):

* One ``Scattergl`` trace holds every image. Its x/y/customdata/colour/symbol arrays are
  numpy arrays, which plotly serialises as base64 typed arrays (``{"dtype", "bdata"}``), so
  the whole map costs about 20 bytes per point and reaches the browser once.
* The colour of a point is a small integer *code* (an index into the current mode's legend)
  mapped through a step colour scale; one extra code means "hidden" and maps to a fully
  transparent colour. Changing the colour mode, hiding a class in the legend or filtering
  therefore only re-sends the code array (1-2 bytes per point) and the colour scale, as a
  ``dash.Patch``; size and opacity changes send a scalar.
* A second, one-point trace rings the clicked image.
* The legend is our own list of buttons (``legend_rows``), not plotly's: a single trace has
  no per-class legend entries, and an HTML list can show counts and scroll for 1000 classes.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from _plotly_utils.utils import to_typed_array_spec
from dash import Patch, html

MODES: dict[str, str] = {
    "label": "True label",
    "pred": "Predicted label",
    "correct": "Correct vs wrong",
    "confidence": "Confidence",
}
SHOW_FILTERS: dict[str, str] = {
    "all": "All images",
    "wrong": "Misclassified only",
    "correct": "Correctly classified only",
}

# Tableau 20, strong colours first: the classes that matter most (the labels) get the most
# distinguishable ones. Colours repeat after 20 classes; the legend and tooltip still name them.
PALETTE: tuple[str, ...] = (
    "#4E79A7", "#F28E2B", "#E15759", "#76B7B2", "#59A14F",
    "#EDC948", "#B07AA1", "#FF9DA7", "#9C755F", "#499894",
    "#A0CBE8", "#FFBE7D", "#FF9D9A", "#86BCB6", "#8CD17D",
    "#F1CE63", "#D4A6C8", "#FABFD2", "#D7B5A6", "#79706E",
)
UNKNOWN_COLOR = "#B8B8B8"
CORRECT_COLOR = "#3B9A5C"
WRONG_COLOR = "#D6312B"
TRANSPARENT = "rgba(0,0,0,0)"
SELECTED_COLOR = "#111827"
# Viridis: perceptually uniform, readable for colour-blind users.
CONFIDENCE_SCALE: tuple[str, ...] = (
    "#440154", "#482878", "#3E4A89", "#31688E", "#26828E",
    "#1F9E89", "#35B779", "#6DCD59", "#B4DE2C", "#FDE725",
)
CONF_LEVELS = 254  # confidence codes 1..255; 0 = hidden

# plotly symbol numbers: misclassified images are crosses in every colour mode.
SYMBOL_OK = 0  # circle
SYMBOL_WRONG = 4  # x

MAIN_TRACE = 0
SELECTED_TRACE = 1
UNLABELLED = "(no label)"


@dataclass(frozen=True)
class LegendEntry:
    key: str  # stable value used by the legend checklist and the hidden set
    label: str  # shown to the user (as text, never HTML)
    color: str
    count: int


@dataclass(eq=False)
class MapData:
    """The per-point arrays the map needs, derived once from the run's table."""

    x: np.ndarray  # float32 [N]
    y: np.ndarray  # float32 [N]
    ids: np.ndarray  # smallest unsigned int type holding N-1
    confidence: np.ndarray  # float32 [N]
    correct: np.ndarray  # int8 [N]: 1 correct, 0 wrong, -1 unknown
    label_code: np.ndarray  # int32 [N] index into ``vocab``, -1 unlabelled
    pred_code: np.ndarray  # int32 [N] index into ``vocab``
    vocab: list[str]  # every class name that occurs as a label or a prediction
    colors: dict[str, str]  # class name -> colour, the same in every mode
    has_labels: bool
    has_correct: bool
    split_code: np.ndarray | None = None  # int32 [N] index into ``splits``, -1 none
    splits: list[str] = field(default_factory=list)
    names: np.ndarray | None = None  # object [N]: what the file-name search looks at
    proj3d: np.ndarray | None = None  # float32 [N, 3] when the run has a 3-D map
    _legends: dict[str, tuple[list[LegendEntry], np.ndarray]] = field(
        default_factory=dict, repr=False
    )
    _masks: OrderedDict[Any, np.ndarray] = field(default_factory=OrderedDict, repr=False)
    _search: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.x)

    @property
    def has_3d(self) -> bool:
        return self.proj3d is not None and len(self.proj3d) == len(self.x)

    @property
    def has_unlabelled(self) -> bool:
        return bool((self.label_code < 0).any())

    @property
    def has_splits(self) -> bool:
        return bool(self.splits)

    @property
    def n_wrong(self) -> int:
        return int((self.correct == 0).sum())


@dataclass(frozen=True)
class ViewState:
    """What the user chose: colour mode, hidden legend entries, filters."""

    mode: str = "label"
    hidden: frozenset[str] = frozenset()
    show: str = "all"
    conf_range: tuple[float, float] = (0.0, 1.0)
    # Filters: empty means "any". Classes are indices into ``MapData.vocab`` (-1: no label),
    # splits into ``MapData.splits`` (-1: none); ``search`` matches file names.
    labels: frozenset[int] = frozenset()
    preds: frozenset[int] = frozenset()
    splits: frozenset[int] = frozenset()
    search: str = ""

    @classmethod
    def from_inputs(
        cls,
        data: MapData,
        mode: str | None,
        hidden: Iterable[str] | None,
        show: str | None,
        conf_range: Sequence[float] | None,
        filters: Mapping[str, Any] | None = None,
    ) -> ViewState:
        """Build from raw control values (anything unknown falls back to the default).
        ``filters``: {"labels", "preds", "splits": [index, ...], "search": str}."""
        mode = mode if mode in available_modes(data) else default_mode(data)
        keys = {e.key for e in legend(data, mode)[0]}
        lo, hi = (list(conf_range) if conf_range else [0.0, 1.0])[:2]
        f = filters or {}
        return cls(
            mode=mode,
            hidden=frozenset(k for k in (hidden or ()) if k in keys),
            show=show if show in available_filters(data) else "all",
            conf_range=(float(lo), float(hi)),
            labels=_indices(f.get("labels"), -1, len(data.vocab)),
            preds=_indices(f.get("preds"), 0, len(data.vocab)),
            splits=_indices(f.get("splits"), -1, len(data.splits)),
            search=str(f.get("search") or "").strip()[:200],
        )


def _indices(values: Any, lo: int, hi: int) -> frozenset[int]:
    """Valid integer indices in [lo, hi) out of a control's raw value (a list)."""
    if not isinstance(values, (list, tuple)):
        return frozenset()
    return frozenset(int(v) for v in values
                     if isinstance(v, int) and not isinstance(v, bool) and lo <= v < hi)


# --------------------------------------------------------------------------------------
# From the table


def _label_strings(col: pd.Series) -> np.ndarray:
    """Label column as an object array of str / None (it may be pandas' nullable string)."""
    return np.array([None if pd.isna(v) else str(v) for v in col], dtype=object)


def id_dtype(n: int) -> np.dtype:
    """Smallest unsigned type that holds ids 0..n-1 (plotly supports u1/u2/u4 typed arrays)."""
    if n <= 1 << 8:
        return np.dtype(np.uint8)
    if n <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


def map_data(table: pd.DataFrame, class_names: Sequence[str] = (),
             proj3d: np.ndarray | None = None) -> MapData:
    """Extract the compact per-point arrays and the class vocabulary from a run table
    (``proj3d``: the run's optional 3-D projection)."""
    n = len(table)
    labels = _label_strings(table["label"]) if "label" in table else np.full(n, None, object)
    preds = np.array([str(v) for v in table["pred"]], dtype=object)
    has_labels = bool(any(v is not None for v in labels))

    # Vocabulary order decides colours: labels first (in the model's class order when they
    # are model classes), then predicted classes by frequency. Every mode uses it.
    order = {c: i for i, c in enumerate(class_names)}
    label_set = {v for v in labels if v is not None}
    vocab = sorted(label_set, key=lambda c: (order.get(c, len(order)), c))
    seen = set(vocab)
    pred_counts = pd.Series(preds).value_counts(sort=False)
    extra = sorted((c for c in pred_counts.index if c not in seen),
                   key=lambda c: (-int(pred_counts[c]), order.get(c, len(order)), c))
    vocab += extra
    index = {c: i for i, c in enumerate(vocab)}
    colors = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(vocab)}

    if "correct" in table:
        correct = np.array(
            [-1 if pd.isna(v) else int(bool(v)) for v in table["correct"]], dtype=np.int8
        )
    else:
        correct = np.full(n, -1, np.int8)
    splits: list[str] = []
    split_code = np.full(n, -1, np.int32)
    if "split" in table:
        split_values = _label_strings(table["split"])
        splits = sorted({v for v in split_values if v is not None})
        where = {v: i for i, v in enumerate(splits)}
        split_code = np.array([where[v] if v is not None else -1 for v in split_values],
                              np.int32)
    name_col = "relpath" if "relpath" in table else "name" if "name" in table else None
    names = (np.array([str(v) for v in table[name_col]], dtype=object) if name_col
             else np.full(n, "", object))
    if proj3d is not None:
        proj3d = np.ascontiguousarray(np.asarray(proj3d, dtype=np.float32))
    return MapData(
        x=np.ascontiguousarray(table["x"].to_numpy(dtype=np.float32)),
        y=np.ascontiguousarray(table["y"].to_numpy(dtype=np.float32)),
        ids=np.arange(n, dtype=id_dtype(n)),
        confidence=np.ascontiguousarray(table["confidence"].to_numpy(dtype=np.float32)),
        correct=correct,
        label_code=np.array([index[v] if v is not None else -1 for v in labels], np.int32),
        pred_code=np.array([index[v] for v in preds], np.int32),
        vocab=vocab,
        colors=colors,
        has_labels=has_labels,
        has_correct=bool((correct >= 0).any()),
        split_code=split_code,
        splits=splits,
        names=names,
        proj3d=proj3d if proj3d is not None and len(proj3d) == n else None,
    )


def default_size(n: int) -> int:
    """Marker size that reads well: large for a few dozen images, small for 100k."""
    return int(np.clip(round(14 - 2 * np.log10(max(n, 1))), 3, 10))


def default_opacity(n: int) -> float:
    """Opaque for small maps; translucent for dense ones so that overlaps show density."""
    return float(np.clip(round(1.05 - 0.08 * np.log10(max(n, 1)), 2), 0.4, 0.9))


def available_modes(data: MapData) -> list[str]:
    """Colour modes that mean something for this run (no label modes without labels)."""
    modes = ["label"] if data.has_labels else []
    modes.append("pred")
    if data.has_correct:
        modes.append("correct")
    modes.append("confidence")
    return modes


def default_mode(data: MapData) -> str:
    return available_modes(data)[0]


def available_filters(data: MapData) -> list[str]:
    return list(SHOW_FILTERS) if data.has_correct else ["all"]


# --------------------------------------------------------------------------------------
# Colour mapping per mode


def legend(data: MapData, mode: str) -> tuple[list[LegendEntry], np.ndarray]:
    """Legend entries of ``mode`` and each point's entry index (int32 [N]); cached."""
    if mode in data._legends:
        return data._legends[mode]
    if mode in ("label", "pred"):
        src = data.label_code if mode == "label" else data.pred_code
        present = np.unique(src[src >= 0])
        counts = np.bincount(src[src >= 0], minlength=len(data.vocab))
        entries = [
            LegendEntry(f"class:{data.vocab[c]}", data.vocab[c], data.colors[data.vocab[c]],
                        int(counts[c]))
            for c in present
        ]
        remap = np.full(len(data.vocab) + 1, -1, np.int32)
        remap[present] = np.arange(len(present), dtype=np.int32)
        codes = remap[src]  # -1 (unlabelled) maps through remap[-1] == -1
        if (codes < 0).any():
            entries.append(LegendEntry("none", UNLABELLED, UNKNOWN_COLOR, int((codes < 0).sum())))
            codes = np.where(codes < 0, len(entries) - 1, codes).astype(np.int32)
    elif mode == "correct":
        spec = [
            ("correct", "Correct", CORRECT_COLOR, 1),
            ("wrong", "Misclassified", WRONG_COLOR, 0),
            ("unknown", "Unknown", UNKNOWN_COLOR, -1),
        ]
        entries, codes = [], np.zeros(len(data), np.int32)
        for key, label, color, value in spec:
            mask = data.correct == value
            if mask.any():
                codes[mask] = len(entries)
                entries.append(LegendEntry(key, label, color, int(mask.sum())))
    elif mode == "confidence":
        entries, codes = [], np.zeros(len(data), np.int32)
    else:
        raise ValueError(f"unknown colour mode {mode!r}")
    data._legends[mode] = (entries, codes)
    return entries, codes


MASK_CACHE = 16
_MASK_LOCK = threading.Lock()


def visible_mask(data: MapData, view: ViewState) -> np.ndarray:
    """Which points the current legend and filters show (bool [N], read-only). Cached per
    view: hover, gallery, tables and exports all ask for the same mask."""
    with _MASK_LOCK:  # waitress threads share the cache
        hit = data._masks.get(view)
        if hit is not None:
            data._masks.move_to_end(view)
            return hit
    mask = _visible_mask(data, view)
    mask.flags.writeable = False
    with _MASK_LOCK:
        data._masks[view] = mask
        while len(data._masks) > MASK_CACHE:
            data._masks.popitem(last=False)
    return mask


def name_matches(data: MapData, search: str) -> np.ndarray:
    """File names (relative paths) that contain ``search``, ignoring case; ``*`` and ``?``
    work as wildcards."""
    key = search.casefold()
    with _MASK_LOCK:
        hit = data._search.get(key)
    if hit is not None:
        return hit
    names = pd.Series(data.names if data.names is not None else np.full(len(data), "", object))
    lowered = names.str.casefold()
    if "*" in key or "?" in key:
        pattern = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in key)
        out = lowered.str.contains(pattern, regex=True, flags=re.S).to_numpy(dtype=bool)
    else:
        out = lowered.str.contains(key, regex=False).to_numpy(dtype=bool)
    with _MASK_LOCK:
        data._search.clear()  # one search at a time: typing replaces it
        data._search[key] = out
    return out


def _visible_mask(data: MapData, view: ViewState) -> np.ndarray:
    entries, codes = legend(data, view.mode)
    mask = np.ones(len(data), bool)
    if view.hidden and entries:
        hidden = np.array([e.key in view.hidden for e in entries])
        mask &= ~hidden[codes]
    if view.show == "wrong":
        mask &= data.correct == 0
    elif view.show == "correct":
        mask &= data.correct == 1
    lo, hi = view.conf_range
    if lo > 0.0 or hi < 1.0:
        # A little slack so that the slider's rounding never drops a point at the edge.
        mask &= (data.confidence >= lo - 1e-6) & (data.confidence <= hi + 1e-6)
    if view.labels:
        mask &= np.isin(data.label_code, list(view.labels))
    if view.preds:
        mask &= np.isin(data.pred_code, list(view.preds))
    if view.splits and data.split_code is not None:
        mask &= np.isin(data.split_code, list(view.splits))
    if view.search:
        mask &= name_matches(data, view.search)
    return mask


def is_visible(data: MapData, view: ViewState, image_id: int) -> bool:
    return bool(visible_mask(data, view)[image_id])


def _code_dtype(n_codes: int) -> np.dtype:
    return np.dtype(np.uint8) if n_codes <= 256 else np.dtype(np.uint16)


def _step_scale(colors: Sequence[str]) -> list[list[Any]]:
    """A colour scale that maps integer code i (with cmin=-0.5, cmax=n-0.5) to colors[i]."""
    n = len(colors)
    scale: list[list[Any]] = []
    for i, c in enumerate(colors):
        scale.append([i / n, c])
        scale.append([(i + 1) / n, c])
    return scale


@dataclass
class ColorStyle:
    """The marker colour of the main trace for one view: codes plus how to read them."""

    codes: np.ndarray
    colorscale: list[list[Any]]
    cmin: float
    cmax: float
    showscale: bool
    colorbar: dict[str, Any] | None

    def marker(self) -> dict[str, Any]:
        m: dict[str, Any] = {
            "color": self.codes,
            "colorscale": self.colorscale,
            "cmin": self.cmin,
            "cmax": self.cmax,
            "showscale": self.showscale,
        }
        if self.colorbar is not None:
            m["colorbar"] = self.colorbar
        return m


def color_style(data: MapData, view: ViewState) -> ColorStyle:
    """Per-point colour codes for ``view`` (hidden points get the transparent code)."""
    visible = visible_mask(data, view)
    if view.mode == "confidence":
        codes = 1 + np.rint(np.clip(data.confidence, 0, 1) * CONF_LEVELS)
        codes = np.where(visible, codes, 0).astype(np.uint8)
        k = len(CONFIDENCE_SCALE) - 1
        lo = 1 / (CONF_LEVELS + 1)
        scale = [[0.0, TRANSPARENT], [lo * 0.999, TRANSPARENT]] + [
            [lo + (1 - lo) * i / k, c] for i, c in enumerate(CONFIDENCE_SCALE)
        ]
        ticks = [0, 0.25, 0.5, 0.75, 1.0]
        colorbar = {
            "title": {"text": "confidence", "side": "right"},
            "tickvals": [1 + t * CONF_LEVELS for t in ticks],
            "ticktext": [f"{t:g}" for t in ticks],
            "thickness": 12,
            "len": 0.6,
            "outlinewidth": 0,
        }
        return ColorStyle(codes, scale, 0.0, float(CONF_LEVELS + 1), True, colorbar)
    entries, codes = legend(data, view.mode)
    hidden_code = len(entries)
    codes = np.where(visible, codes, hidden_code).astype(_code_dtype(hidden_code + 1))
    colors = [e.color for e in entries] + [TRANSPARENT]
    return ColorStyle(codes, _step_scale(colors), -0.5, hidden_code + 0.5, False, None)


# --------------------------------------------------------------------------------------
# The figure


def build_figure(
    data: MapData,
    view: ViewState | None = None,
    *,
    size: float | None = None,
    opacity: float | None = None,
    selected: int | None = None,
    dims: int = 2,
) -> dict[str, Any]:
    """The map as a plotly figure dict: one Scattergl trace of every image plus the
    selected-point ring. Arrays are already base64 typed-array specs: building a
    ``go.Figure`` would validate 100k-element arrays element by element (seconds).
    ``dims=3`` draws the run's 3-D projection as a Scatter3d with the same trace layout
    (main, ring), so every Patch below works on both."""
    view = view or ViewState(mode=default_mode(data))
    size = default_size(len(data)) if size is None else size
    opacity = default_opacity(len(data)) if opacity is None else opacity
    style = color_style(data, view)
    marker: dict[str, Any] = {**style.marker(), "size": size, "opacity": opacity,
                              "line": {"width": 0}}
    marker["color"] = typed(style.codes)
    three = dims == 3 and data.has_3d
    if data.n_wrong and not three:  # only sent when there is something to mark
        # (Scatter3d takes symbol names, not numbers: 3-D shows errors by colour only.)
        marker["symbol"] = typed(
            np.where(data.correct == 0, SYMBOL_WRONG, SYMBOL_OK).astype(np.uint8)
        )
    main: dict[str, Any] = {
        "type": "scatter3d" if three else "scattergl",
        "name": "images",
        "customdata": typed(data.ids),
        "mode": "markers",
        "marker": marker,
        "hoverinfo": "none",  # the tooltip is a dcc.Tooltip fed by customdata
        "showlegend": False,
    }
    ring: dict[str, Any] = {
        "type": main["type"],
        "name": "selected",
        "mode": "markers",
        "marker": {"symbol": "circle-open", "size": 18, "color": SELECTED_COLOR,
                   "line": {"width": 3, "color": SELECTED_COLOR}},
        "hoverinfo": "skip",
        "showlegend": False,
    }
    font = {"family": "Inter, system-ui, sans-serif", "size": 12, "color": "#374151"}
    if three:
        p3 = data.proj3d
        assert p3 is not None
        main.update(x=typed(p3[:, 0]), y=typed(p3[:, 1]), z=typed(p3[:, 2]))
        ring.update(zip("xyz", _selected_xyz(data, selected), strict=True))
        axis3 = {"visible": True, "showgrid": True, "gridcolor": "#eef0f3", "zeroline": False,
                 "showticklabels": False, "title": {"text": ""}, "showspikes": False,
                 "backgroundcolor": "white"}
        layout = {
            "margin": {"l": 0, "r": 0, "t": 0, "b": 0},
            "paper_bgcolor": "white",
            "scene": {"xaxis": axis3, "yaxis": axis3, "zaxis": axis3, "aspectmode": "data",
                      "dragmode": "orbit"},
            "hovermode": "closest",
            "clickmode": "event",
            "showlegend": False,
            "uirevision": "map3d",
            "font": font,
        }
        return {"data": [main, ring], "layout": layout}
    main.update(x=typed(data.x), y=typed(data.y))
    sx, sy = _selected_xy(data, selected)
    ring.update(x=sx, y=sy)
    axis = {"visible": False, "showgrid": False, "zeroline": False}
    layout = {
        "margin": {"l": 8, "r": 8, "t": 8, "b": 8},
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "xaxis": {**axis, "range": padded_range(data.x)},
        "yaxis": {**axis, "range": padded_range(data.y)},
        "dragmode": "zoom",
        "hovermode": "closest",
        "clickmode": "event",
        "showlegend": False,
        "uirevision": "map",  # keep zoom/pan across Patches
        # The dimming of unselected points is the selection's look; keep it readable.
        "selectionrevision": 0,
        "newselection": {"line": {"color": "#2563eb", "width": 1.5, "dash": "dot"}},
        "font": font,
    }
    return {"data": [main, ring], "layout": layout}


def padded_range(values: np.ndarray, pad: float = 0.06) -> list[float] | None:
    """Axis range with a margin, so points at the edge are not cut by the frame (the
    modebar's reset goes back to it)."""
    v = values[np.isfinite(values)]
    if not len(v):
        return None
    lo, hi = float(v.min()), float(v.max())
    margin = (hi - lo) * pad if hi > lo else 1.0
    return [lo - margin, hi + margin]


def graph_config() -> dict[str, Any]:
    """dcc.Graph config: plotly's modebar with zoom, pan, box and lasso select."""
    return {
        "displaylogo": False,
        "scrollZoom": True,
        "displayModeBar": True,
        "modeBarButtonsToRemove": ["autoScale2d", "toggleSpikelines", "hoverClosestCartesian",
                                   "hoverCompareCartesian"],
        "toImageButtonOptions": {"format": "png", "filename": "featscope-map", "scale": 2},
    }


def _selected_xy(data: MapData, selected: int | None) -> tuple[list[float], list[float]]:
    if selected is None or not 0 <= selected < len(data):
        return [], []
    return [float(data.x[selected])], [float(data.y[selected])]


def _selected_xyz(data: MapData, selected: int | None) -> list[list[float]]:
    if selected is None or not 0 <= selected < len(data) or data.proj3d is None:
        return [[], [], []]
    return [[float(v)] for v in data.proj3d[selected]]


# --------------------------------------------------------------------------------------
# Patches: what changes when a control changes, and nothing else


def typed(arr: np.ndarray) -> dict[str, str]:
    """A numpy array as plotly's base64 typed-array spec (Patch values are not converted)."""
    return to_typed_array_spec(np.ascontiguousarray(arr))


def color_patch(data: MapData, view: ViewState) -> Patch:
    """Recolour / re-filter the map: the code array and its colour scale only."""
    style = color_style(data, view)
    p = Patch()
    marker = p["data"][MAIN_TRACE]["marker"]
    marker["color"] = typed(style.codes)
    marker["colorscale"] = style.colorscale
    marker["cmin"] = style.cmin
    marker["cmax"] = style.cmax
    marker["showscale"] = style.showscale
    if style.colorbar is not None:
        marker["colorbar"] = style.colorbar
    return p


def marker_patch(size: float | None = None, opacity: float | None = None) -> Patch:
    """Point size and opacity are scalars: a few bytes."""
    p = Patch()
    marker = p["data"][MAIN_TRACE]["marker"]
    if size is not None:
        marker["size"] = float(size)
    if opacity is not None:
        marker["opacity"] = float(opacity)
    return p


def selection_patch(data: MapData, selected: int | None, dims: int = 2) -> Patch:
    """Move the ring to the clicked image (or remove it); ``dims=3``: on the 3-D map."""
    p = Patch()
    if dims == 3 and data.has_3d:
        for axis, values in zip("xyz", _selected_xyz(data, selected), strict=True):
            p["data"][SELECTED_TRACE][axis] = values
        return p
    sx, sy = _selected_xy(data, selected)
    p["data"][SELECTED_TRACE]["x"] = sx
    p["data"][SELECTED_TRACE]["y"] = sy
    return p


def highlight_patch(ids: np.ndarray | None, revision: int) -> Patch:
    """Show a selection made outside the map (confusion cell, suspects, filters) the way
    plotly shows a lasso: the chosen points stay, the rest are dimmed. ``ids`` None clears
    it. Bumping ``selectionrevision`` makes plotly drop its own lasso selection and outline,
    which would otherwise survive the new figure (uirevision keeps user selections)."""
    p = Patch()
    p["data"][MAIN_TRACE]["selectedpoints"] = None if ids is None else [int(i) for i in ids]
    p["layout"]["selectionrevision"] = int(revision)
    p["layout"]["selections"] = []
    return p


def legend_row_class(entry: LegendEntry, hidden: Iterable[str]) -> str:
    return "legend-row off" if entry.key in set(hidden) else "legend-row"


def legend_rows(entries: Sequence[LegendEntry], hidden: Iterable[str] = ()) -> list[html.Button]:
    """The legend: one button per entry (colour swatch, name as text, count); a click
    hides or shows that entry's points."""
    hidden = set(hidden)
    return [
        html.Button(
            [
                html.Span(className="swatch", style={"backgroundColor": e.color}),
                html.Span(e.label, className="legend-name"),
                html.Span(f"{e.count:,}", className="legend-count"),
            ],
            id={"type": "legend-item", "index": i},
            className=legend_row_class(e, hidden),
            title=f"{e.label}: click to hide or show",
            n_clicks=0,
        )
        for i, e in enumerate(entries)
    ]
