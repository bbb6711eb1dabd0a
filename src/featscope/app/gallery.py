"""Components for looking at many images at once: the selection gallery, its class
composition, the nearest neighbours of the open image and the CAM gallery.

Pure builders (values in, Dash components out). Names and labels are always text children,
which Dash escapes; image URLs come from the app context's id-only routes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from dash import html

from .figures import UNLABELLED
from .panels import _text, pct

COMPOSITION_TOP = 6


@dataclass(frozen=True)
class Tile:
    """What a thumbnail tile says about one image."""

    image_id: int
    name: str
    label: str | None
    pred: str
    confidence: float
    correct: bool | None

    @classmethod
    def rows(cls, table: pd.DataFrame, ids: Sequence[int] | np.ndarray) -> list[Tile]:
        """Tiles for ``ids`` (in that order), one table lookup for all of them."""
        ids = [int(i) for i in ids]
        if not ids:
            return []
        cols = [c for c in ("name", "label", "pred", "confidence", "correct") if c in table]
        recs = table.iloc[ids][cols].to_dict("records")
        out = []
        for image_id, rec in zip(ids, recs, strict=True):
            correct = rec.get("correct")
            correct = None if _text(correct) is None else bool(correct)
            out.append(cls(image_id, str(rec.get("name", image_id)), _text(rec.get("label")),
                           str(rec["pred"]), float(rec["confidence"]), correct))
        return out


def _labels_lines(tile: Tile) -> list[Any]:
    """"true X" and "pred Y" on their own lines (a narrow tile would cut one line off)."""
    lines: list[Any] = []
    if tile.label is not None:
        lines.append(html.Div([html.Span("true ", className="k"),
                               html.Span(tile.label, className="v")], className="tile-label"))
    lines.append(html.Div([html.Span("pred ", className="k"),
                           html.Span(tile.pred, className="v pred")], className="tile-label"))
    return lines


def tile_class(tile: Tile, base: str = "tile") -> str:
    return base + (" wrong" if tile.correct is False else "")


def gallery_tiles(tiles: Sequence[Tile], thumb_url: Callable[[int], str]) -> list[html.Button]:
    """Thumbnails with file name, true and predicted label; a click opens the image."""
    return [
        html.Button(
            [
                html.Div(html.Img(src=thumb_url(t.image_id), alt="",
                                  className="tile-img"), className="tile-box"),
                html.Div(t.name, className="tile-name", title=t.name),
                html.Div(_labels_lines(t), className="tile-labels",
                         title=f"true {t.label} · predicted {t.pred} ({pct(t.confidence)})"
                         if t.label is not None else f"predicted {t.pred}"),
            ],
            id={"type": "gal-tile", "index": t.image_id},
            className=tile_class(t),
            n_clicks=0,
            **{"data-id": str(t.image_id)},
        )
        for t in tiles
    ]


def composition_children(comp: pd.DataFrame, top: int = COMPOSITION_TOP) -> list[Any]:
    """Two short bar lists, true and predicted classes of the selection, most frequent
    first; the rest summed up in one line."""
    if comp is None or not len(comp):
        return []
    columns = []
    for col, title in (("true", "True label"), ("pred", "Predicted")):
        counts = comp[col][comp[col] > 0].sort_values(ascending=False, kind="stable")
        total = int(counts.sum())
        if not total or (col == "true" and list(counts.index) == [UNLABELLED]):
            continue  # an unlabelled run has nothing to say about true classes
        rows: list[Any] = [html.Div(title, className="comp-title")]
        for name, count in counts.iloc[:top].items():
            share = count / total
            rows.append(html.Div(
                [html.Div(className="comp-bar", style={"width": f"{100 * share:.1f}%"}),
                 html.Span(str(name), className="comp-name", title=str(name)),
                 html.Span(f"{int(count):,}", className="comp-count")],
                className="comp-row",
                **{"data-col": col, "data-count": str(int(count))},
            ))
        rest = counts.iloc[top:]
        if len(rest):
            rows.append(html.Div(f"+ {len(rest)} more classes ({int(rest.sum()):,})",
                                 className="comp-more"))
        columns.append(html.Div(rows, className="comp-col"))
    return columns


# --------------------------------------------------------------------------------------
# Nearest neighbours


@dataclass(frozen=True)
class Neighbour:
    tile: Tile
    similarity: float


def neighbours_of(
    index: np.ndarray | None, sims: np.ndarray | None, table: pd.DataFrame, image_id: int,
    k: int,
) -> list[Neighbour] | None:
    """The ``k`` nearest images from the run's stored neighbour table: one row lookup
    (``run.neighbor_index[image_id]``), no scan. None when the run has no table."""
    if index is None or sims is None or not 0 <= image_id < len(index):
        return None
    k = max(0, min(int(k), index.shape[1]))
    ids = np.asarray(index[image_id, :k], dtype=np.int64)
    sim = np.asarray(sims[image_id, :k], dtype=np.float64)
    valid = (ids >= 0) & (ids < len(table))
    tiles = Tile.rows(table, ids[valid])
    return [Neighbour(t, float(s)) for t, s in zip(tiles, sim[valid], strict=True)]


def neighbour_tiles(neighbours: Sequence[Neighbour] | None, thumb_url: Callable[[int], str],
                    image: Tile | None = None) -> list[Any]:
    """Neighbour thumbnails with labels and cosine similarity; a click moves to one. A
    neighbour whose true label differs from the open image's is marked."""
    if neighbours is None:
        return [html.Div("This run has no neighbour table (built by an older featscope); "
                         "rebuild it to see nearest neighbours.", className="empty-hint")]
    if not neighbours:
        return [html.Div("No other images.", className="empty-hint")]
    out = []
    for nb in neighbours:
        t = nb.tile
        cls = tile_class(t, "tile nb-tile")
        if image is not None and image.label is not None and t.label not in (None, image.label):
            cls += " other-label"
        out.append(html.Button(
            [
                html.Div(html.Img(src=thumb_url(t.image_id), alt="",
                                  className="tile-img"), className="tile-box"),
                html.Div([html.Span(f"{nb.similarity:.3f}", className="sim"),
                          html.Span(" cos", className="k")], className="tile-sim"),
                html.Div(_labels_lines(t), className="tile-labels"),
            ],
            id={"type": "nb-tile", "index": t.image_id},
            className=cls,
            n_clicks=0,
            title=f"{t.name}: cosine similarity {nb.similarity:.3f}",
            **{"data-id": str(t.image_id)},
        ))
    return out


# --------------------------------------------------------------------------------------
# CAM gallery


def cam_tiles(tiles: Sequence[Tile], srcs: Sequence[str | None],
              errors: Sequence[str | None] | None = None) -> list[html.Button]:
    """One overlay per image (``srcs[i]`` None while it is being computed)."""
    errors = errors or [None] * len(tiles)
    out = []
    for t, src, err in zip(tiles, srcs, errors, strict=True):
        box: list[Any] = []
        if src:
            box.append(html.Img(src=src, alt="CAM overlay", className="tile-img"))
        elif err:
            box.append(html.Div("failed", className="tile-wait error", title=err))
        else:
            box.append(html.Div("…", className="tile-wait"))
        out.append(html.Button(
            [html.Div(box, className="tile-box cam-box"),
             html.Div(t.name, className="tile-name", title=t.name),
             html.Div(_labels_lines(t), className="tile-labels")],
            id={"type": "camg-tile", "index": t.image_id},
            className=tile_class(t, "tile cam-tile"),
            n_clicks=0,
            **{"data-id": str(t.image_id)},
        ))
    return out
