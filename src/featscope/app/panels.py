"""Pure builders for everything around the map: URL state, tooltip, detail panel, CAM view.

Every user-controlled string (file names, paths, labels, class names) goes into Dash
components as *text*; Dash escapes it. Nothing here builds HTML strings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode

import pandas as pd
from dash import html

# Canonical non-negative integers only: no sign, no leading zeros, no float, no spaces.
_INDEX = re.compile(r"0|[1-9][0-9]{0,9}")


def parse_index(raw: Any, n: int) -> int | None:
    """``raw`` as an index into ``range(n)``, or None for anything else."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw if 0 <= raw < n else None
    if not isinstance(raw, str) or not _INDEX.fullmatch(raw):
        return None
    value = int(raw)
    return value if value < n else None


# --------------------------------------------------------------------------------------
# URL: ?id=123[&cls=281][&method=gradcam++]


@dataclass(frozen=True)
class UrlState:
    image_id: int | None = None
    target: int | None = None
    method: str | None = None


_METHOD = re.compile(r"[a-z0-9+_-]{1,32}")


def parse_url(
    search: str | None, n_images: int, n_classes: int, methods: Sequence[str] | None = None
) -> UrlState:
    """The selection a link encodes; anything invalid is dropped, never an error.
    ``methods`` None (CAM code still loading) accepts any well-formed method key."""
    if not search:
        return UrlState()
    q = parse_qs(search.lstrip("?"), keep_blank_values=False)

    def one(name: str) -> str | None:
        values = q.get(name)
        return values[0] if values else None

    image_id = parse_index(one("id"), n_images)
    if image_id is None:
        return UrlState()
    target = parse_index(one("cls"), n_classes)
    method = one("method")
    ok = method is not None and (method in methods if methods is not None
                                 else bool(_METHOD.fullmatch(method)))
    return UrlState(image_id, target, method if ok else None)


def format_url(
    image_id: int | None,
    target: int | None = None,
    method: str | None = None,
    *,
    default_target: int | None = None,
    default_method: str = "gradcam",
) -> str:
    """The search string for a selection; defaults are left out to keep links short."""
    if image_id is None:
        return ""
    q: dict[str, Any] = {"id": image_id}
    if target is not None and target != default_target:
        q["cls"] = target
    if method and method != default_method:
        q["method"] = method
    return "?" + urlencode(q)


# --------------------------------------------------------------------------------------
# Rows of the table


def _text(value: Any) -> str | None:
    if value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def _as_list(value: Any) -> list[Any]:
    """A list cell of the table (parquet gives numpy arrays) as a list; missing: []."""
    if value is None:
        return []
    if isinstance(value, float) and math.isnan(value):
        return []
    return list(value)


@dataclass(frozen=True)
class ImageInfo:
    image_id: int
    name: str
    path: str
    label: str | None
    pred: str
    pred_index: int
    confidence: float
    correct: bool | None
    width: int
    height: int
    split: str | None
    top5: list[tuple[str, float]]

    @classmethod
    def from_table(cls, table: pd.DataFrame, image_id: int) -> ImageInfo:
        row = table.iloc[image_id]
        correct = row.get("correct")
        labels = _as_list(row.get("top5_labels"))
        probs = [float(p) for p in _as_list(row.get("top5_probs"))]
        return cls(
            image_id=image_id,
            name=str(row["name"]),
            path=str(row["path"]),
            label=_text(row.get("label")),
            pred=str(row["pred"]),
            pred_index=int(row["pred_index"]),
            confidence=float(row["confidence"]),
            correct=None if _text(correct) is None else bool(correct),
            width=int(row.get("width", 0) or 0),
            height=int(row.get("height", 0) or 0),
            split=_text(row.get("split")),
            top5=[(str(n), p) for n, p in zip(labels, probs, strict=False)],
        )


def pct(p: float) -> str:
    if not math.isfinite(p):
        return "–"
    return f"{100 * p:.1f}%" if p < 0.9995 else "100%"


def outcome_badge(correct: bool | None) -> html.Span | None:
    if correct is None:
        return None
    if correct:
        return html.Span("correct", className="badge badge-ok")
    return html.Span("misclassified", className="badge badge-wrong")


# --------------------------------------------------------------------------------------
# Tooltip


def tooltip_children(info: ImageInfo, thumb_url: str) -> list[Any]:
    """Thumbnail, file name, true label, predicted label with its confidence."""
    rows: list[Any] = [
        html.Img(src=thumb_url, className="tip-thumb", alt=""),
        html.Div(info.name, className="tip-name"),
    ]
    if info.label is not None:
        rows.append(html.Div([html.Span("true ", className="tip-key"),
                              html.Span(info.label, className="tip-val")]))
    rows.append(html.Div([html.Span("pred ", className="tip-key"),
                          html.Span(info.pred, className="tip-val"),
                          html.Span(f" {pct(info.confidence)}", className="tip-conf")]))
    badge = outcome_badge(info.correct)
    if badge is not None:
        rows.append(html.Div(badge))
    return [html.Div(rows, className="tip")]


def hover_target(hovered: Mapping[str, Any] | None, n: int) -> tuple[int, dict] | None:
    """(image id, bbox) of the hovered map point ({"id", "bbox"} from the page), or None."""
    if not hovered:
        return None
    image_id = parse_index(hovered.get("id"), n)
    bbox = hovered.get("bbox")
    if image_id is None or not bbox:
        return None
    return image_id, bbox


def click_target(clicked: Mapping[str, Any] | None, n: int) -> int | None:
    """Image id of a clicked map point ({"id"} from the page), or None."""
    if not clicked:
        return None
    return parse_index(clicked.get("id"), n)


# --------------------------------------------------------------------------------------
# Detail panel


def detail_header(info: ImageInfo) -> list[Any]:
    """File name, size, path, labels: the facts about the clicked image."""
    facts: list[Any] = []
    if info.label is not None:
        facts.append(html.Div([html.Span("True label", className="fact-key"),
                               html.Span(info.label, className="fact-val")]))
    facts.append(html.Div([html.Span("Predicted", className="fact-key"),
                           html.Span(info.pred, className="fact-val"),
                           html.Span(pct(info.confidence), className="fact-conf"),
                           outcome_badge(info.correct)]))
    size = f"{info.width} × {info.height} px" if info.width and info.height else "size unknown"
    meta = [size, f"id {info.image_id}"]
    if info.split:
        meta.append(f"split {info.split}")
    return [
        html.Div(info.name, className="detail-name", title=info.name),
        html.Div(" · ".join(meta), className="detail-meta"),
        html.Div(info.path, className="detail-path", title=info.path),
        html.Div(facts, className="facts"),
    ]


def class_index(name: str, class_names: Sequence[str]) -> int | None:
    try:
        return list(class_names).index(name)
    except ValueError:
        return None


def top5_children(info: ImageInfo, class_names: Sequence[str], target: int | None) -> list[Any]:
    """Top-5 predictions as bars; each is a button that explains that class."""
    rows = []
    for name, p in info.top5:
        idx = class_index(name, class_names)
        width = f"{max(0.0, min(1.0, p)) * 100:.1f}%"
        rows.append(
            html.Button(
                [
                    html.Div(className="bar", style={"width": width}),
                    html.Span(name, className="bar-name", title=name),
                    html.Span(pct(p), className="bar-pct"),
                ],
                id={"type": "top5", "index": -1 if idx is None else idx},
                className="top5-row" + (" active" if idx is not None and idx == target else ""),
                disabled=idx is None,
                title=f"Why {name}? Show the CAM for this class",
                n_clicks=0,
            )
        )
    return rows


def class_options(class_names: Sequence[str]) -> list[dict[str, Any]]:
    return [{"label": f"{name} ({i})", "value": i} for i, name in enumerate(class_names)]


def method_options(methods: Mapping[str, str], slow: frozenset[str] | set[str]) -> list[dict]:
    return [
        {"label": f"{label} (slow)" if key in slow else label, "value": key}
        for key, label in methods.items()
    ]


# --------------------------------------------------------------------------------------
# CAM view


@dataclass
class CamView:
    """What the CAM part of the detail panel shows."""

    overlay_src: str | None = None  # the heatmap layer over the original
    heatmap_src: str | None = None
    download_src: str | None = None  # the composited overlay, for "open"/save
    status: str = ""
    slow_prompt: str | None = None  # set: a slow method waits for the user's go
    error: bool = False


def fmt_seconds(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "an unknown time"
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 90:
        return f"{s:.0f} s"
    m, sec = divmod(round(s), 60)
    if m < 10:
        return f"{m} min {sec} s" if sec else f"{m} min"
    if m < 120:
        return f"{m} min"
    return f"{s / 3600:.1f} h"


def slow_prompt_text(method_label: str, estimate: float | None, device: str) -> str:
    if estimate is None:
        return (f"{method_label} is slow: it runs the model hundreds of times "
                f"(minutes per image on {device}). It runs in the background.")
    return (f"{method_label} is slow: about {fmt_seconds(estimate)} on {device} for this "
            "image. It runs in the background; you can cancel it.")


def cam_status_text(method_label: str, class_name: str, target: int, seconds: float,
                    cached: bool) -> str:
    how = "cached" if cached else f"computed in {fmt_seconds(seconds)}"
    return f"{method_label} for “{class_name}” (class {target}) · {how}"


def job_progress_text(state: str, done: int, total: int, elapsed: float) -> str:
    if state == "running":
        if total:
            return f"{done} / {total} masks · {fmt_seconds(elapsed)} elapsed"
        return f"starting… {fmt_seconds(elapsed)} elapsed"
    if state == "cancelled":
        return "cancelled"
    if state == "failed":
        return "failed"
    return "done"
