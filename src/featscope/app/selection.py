"""Selections of images: what they are, which ids they hold, and the tables made from them.

A selection travels between the browser and the server as a small *spec* (a dcc.Store),
never as a list of 100,000 ids:

* ``{"kind": "map", "bits": <base64>, "n": N}``: a lasso or box on the map. The page packs
  the selected point numbers into a bit set (``np.packbits`` order), 12.5 kB for 100k
  points whatever the selection's size, and exactly the points plotly highlighted
  (shift-drags that add regions included).
* ``{"kind": "cell", "label": "cat", "pred": "dog"}``: a confusion-matrix cell.
* ``{"kind": "ids", "ids": [...], "source": "suspects"}``: a few explicit images.
* ``{"kind": "filters"}``: everything the filters show.

The server resolves a spec to ids (``resolve``) and intersects them with the current filters,
so the gallery, composition and exports always follow the filters. Everything here is plain
numpy/pandas (no Dash), and the table functions take a run's table, so they work the same in
a notebook::

    from featscope.app.selection import selection_table
    run = featscope.load("runs/pets")
    selection_table(run.table, [3, 14, 15])
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # the table functions work without Dash; only the app passes MapData
    from .figures import MapData, ViewState

KINDS = ("map", "cell", "ids", "filters")
MAX_IDS = 10_000  # an explicit id list longer than this must come as a bit set
EXPORT_COLUMNS = ["id", "path", "label", "pred", "confidence", "x", "y"]
UNLABELLED = "(no label)"
ORDERS: dict[str, str] = {
    "id": "Map order (id)",
    "confidence": "Least confident first",
    "suspect": "Most suspicious first",
    "wrong": "Misclassified first",
}


# --------------------------------------------------------------------------------------
# Specs


def encode_bits(ids: Iterable[int], n: int) -> str:
    """Ids in ``range(n)`` as the base64 bit set the page sends (tests, notebooks)."""
    mask = np.zeros(n, bool)
    idx = np.asarray(list(ids), dtype=np.int64)
    mask[idx[(idx >= 0) & (idx < n)]] = True
    return base64.b64encode(np.packbits(mask).tobytes()).decode("ascii")


def decode_bits(bits: Any, n: int) -> np.ndarray | None:
    """The bit set back to a bool mask [n]; None when it is malformed or for another run."""
    if not isinstance(bits, str) or len(bits) > 4 * (n // 24 + 2):
        return None
    try:
        raw = base64.b64decode(bits, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != (n + 7) // 8:
        return None
    return np.unpackbits(np.frombuffer(raw, np.uint8), count=n).astype(bool)


def _int_list(values: Any, n: int) -> list[int] | None:
    if not isinstance(values, list) or len(values) > MAX_IDS:
        return None
    out = [v for v in values if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < n]
    return out if len(out) == len(values) else None


def parse_spec(raw: Any, n: int) -> dict[str, Any] | None:
    """A selection spec from the page, checked; anything malformed is "no selection"."""
    if not isinstance(raw, Mapping) or raw.get("kind") not in KINDS:
        return None
    kind = raw["kind"]
    if kind == "map":
        if raw.get("n") != n or decode_bits(raw.get("bits"), n) is None:
            return None
        return {"kind": "map", "bits": raw["bits"], "n": n, "shape": str(raw.get("shape", ""))}
    if kind == "cell":
        label, pred = raw.get("label"), raw.get("pred")
        if not isinstance(label, str) or not isinstance(pred, str):
            return None
        return {"kind": "cell", "label": label, "pred": pred}
    if kind == "ids":
        ids = _int_list(raw.get("ids"), n)
        if ids is None:
            return None
        return {"kind": "ids", "ids": ids, "source": str(raw.get("source", ""))}
    return {"kind": "filters"}


def resolve(raw: Any, data: MapData) -> np.ndarray | None:
    """The spec's images as a bool mask [N] (before filters); None: no selection."""
    spec = parse_spec(raw, len(data))
    if spec is None:
        return None
    n = len(data)
    if spec["kind"] == "map":
        return decode_bits(spec["bits"], n)
    if spec["kind"] == "cell":
        return cell_mask(data, spec["label"], spec["pred"])
    mask = np.zeros(n, bool)
    if spec["kind"] == "ids":
        mask[spec["ids"]] = True
        return mask
    mask[:] = True
    return mask


def cell_mask(data: MapData, label: str, pred: str) -> np.ndarray:
    """Images whose true label is ``label`` and whose prediction is ``pred``."""
    index = {c: i for i, c in enumerate(data.vocab)}
    li, pi = index.get(label), index.get(pred)
    if li is None or pi is None:
        return np.zeros(len(data), bool)
    return (data.label_code == li) & (data.pred_code == pi)


def selected_ids(raw: Any, data: MapData, view: ViewState) -> np.ndarray | None:
    """Ids (ascending int64) of the selection that the filters show; None: no selection."""
    from .figures import visible_mask

    mask = resolve(raw, data)
    if mask is None:
        return None
    return np.flatnonzero(mask & visible_mask(data, view)).astype(np.int64)


def describe(raw: Any) -> str:
    """Where a selection came from, for its title."""
    spec = raw if isinstance(raw, Mapping) else {}
    kind = spec.get("kind")
    if kind == "map":
        return "box on the map" if spec.get("shape") == "box" else "lasso on the map"
    if kind == "cell":
        return f"true {spec.get('label')} · predicted {spec.get('pred')}"
    if kind == "ids":
        return "from the suspects table" if spec.get("source") == "suspects" else "chosen images"
    if kind == "filters":
        return "everything the filters show"
    return ""


# --------------------------------------------------------------------------------------
# Ordering and paging


def order_ids(ids: np.ndarray, table: pd.DataFrame, order: str | None) -> np.ndarray:
    """The selection in gallery order: by id, least confident, most suspicious (neighbour
    disagreement, then confidently wrong), or misclassified first. Stable: ties keep id
    order."""
    ids = np.asarray(ids, dtype=np.int64)
    if order == "confidence" and "confidence" in table:
        key = table["confidence"].to_numpy(np.float64)[ids]
        return ids[np.argsort(np.nan_to_num(key, nan=np.inf), kind="stable")]
    if order == "suspect":
        col = next((c for c in ("score_neighbor_disagreement", "score_confidently_wrong",
                                "score_low_confidence") if c in table), None)
        if col is not None:
            key = table[col].to_numpy(np.float64)[ids]
            return ids[np.argsort(-np.nan_to_num(key, nan=-np.inf), kind="stable")]
    if order == "wrong" and "correct" in table:
        wrong = ~table["correct"].fillna(True).to_numpy(dtype=bool)[ids]
        return ids[np.argsort(~wrong, kind="stable")]
    return ids


@dataclass(frozen=True)
class Page:
    ids: np.ndarray  # the ids on this page
    page: int  # 0-based, clamped into range
    n_pages: int
    total: int
    start: int  # index of the first id on this page

    def text(self, noun: str = "images") -> str:
        if not self.total:
            return f"no {noun}"
        return f"{self.start + 1:,}–{self.start + len(self.ids):,} of {self.total:,} {noun}"


def paginate(ids: np.ndarray, page: int | None, page_size: int) -> Page:
    """One page of ``ids``; a page past the end shows the last one."""
    page_size = max(1, int(page_size))
    total = len(ids)
    n_pages = max(1, math.ceil(total / page_size))
    page = min(max(0, int(page or 0)), n_pages - 1)
    start = page * page_size
    return Page(ids=np.asarray(ids[start:start + page_size], dtype=np.int64), page=page,
                n_pages=n_pages, total=total, start=start)


def step_page(current: int | None, trigger: str | None, prev_id: str, next_id: str) -> int:
    """The page after a pager click; anything else (new selection, filters) goes to 0."""
    current = int(current or 0)
    if trigger == prev_id:
        return max(0, current - 1)
    if trigger == next_id:
        return current + 1
    return 0


# --------------------------------------------------------------------------------------
# Tables (also the Python API)


def _labels(col: pd.Series) -> pd.Series:
    return col.astype(object).where(col.notna(), UNLABELLED).astype(str)


def selection_table(table: pd.DataFrame, ids: Iterable[int]) -> pd.DataFrame:
    """The selected images as a table: id, path, label, pred, confidence, x, y (in the order
    of ``ids``). What the app's CSV export contains."""
    ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64)
    present = [c for c in EXPORT_COLUMNS if c in table.columns]
    out = table.iloc[ids][present].reset_index(drop=True)
    if "id" not in out:
        out.insert(0, "id", ids)
    return out


def selection_csv(table: pd.DataFrame, ids: Iterable[int]) -> str:
    """``selection_table`` as CSV text (quoted as needed: names may hold commas)."""
    return selection_table(table, ids).to_csv(index=False, lineterminator="\n",
                                              float_format="%.6g")


def selection_paths(table: pd.DataFrame, ids: Iterable[int]) -> str:
    """The selected images' paths, one per line (for ``xargs``, ``rsync --files-from``)."""
    ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64)
    paths = table["path"].to_numpy(dtype=object)[ids]
    return "".join(f"{p}\n" for p in paths)


def composition(table: pd.DataFrame, ids: Iterable[int]) -> pd.DataFrame:
    """Class composition of a selection: one row per class that occurs as a true label or
    a prediction, columns ``true`` and ``pred`` (counts), most frequent first."""
    ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64)
    rows = table.iloc[ids]
    true = (_labels(rows["label"]) if "label" in rows
            else pd.Series(UNLABELLED, index=rows.index)).value_counts()
    pred = rows["pred"].astype(str).value_counts()
    out = pd.DataFrame({"true": true, "pred": pred}).fillna(0).astype(np.int64)
    return _by_frequency(out)


def composition_of(data: MapData, ids: np.ndarray) -> pd.DataFrame:
    """``composition`` from the map's class codes: two bincounts instead of string counting
    (what the app uses; the same result)."""
    ids = np.asarray(ids, dtype=np.int64)
    v = len(data.vocab)
    lab, pred = data.label_code[ids], data.pred_code[ids]
    true = np.append(np.bincount(lab[lab >= 0], minlength=v), int((lab < 0).sum()))
    preds = np.append(np.bincount(pred, minlength=v), 0)
    keep = (true + preds) > 0
    names = np.array([*data.vocab, UNLABELLED], dtype=object)[keep]
    out = pd.DataFrame({"true": true[keep], "pred": preds[keep]},
                       index=pd.Index([str(c) for c in names]))
    return _by_frequency(out.astype(np.int64))


def _by_frequency(out: pd.DataFrame) -> pd.DataFrame:
    """Most frequent (as true + predicted) first; ties by true count, then by name."""
    out.index.name = "class"
    if not len(out):
        return out
    out = out.sort_index(kind="stable")
    total = out["true"] + out["pred"]
    order = np.lexsort((-out["true"].to_numpy(), -total.to_numpy()))
    return out.iloc[order]


@dataclass(frozen=True)
class Summary:
    count: int
    wrong: int
    known: int  # how many have a known outcome (labelled)
    mean_confidence: float

    def text(self) -> str:
        if not self.count:
            return "nothing selected"
        parts = [f"{self.count:,} {'image' if self.count == 1 else 'images'}"]
        if self.known:
            parts.append(f"{self.wrong:,} misclassified ({100 * self.wrong / self.known:.0f}%)")
        parts.append(f"mean confidence {self.mean_confidence:.2f}")
        return " · ".join(parts)


def summarize(data: MapData, ids: np.ndarray) -> Summary:
    ids = np.asarray(ids, dtype=np.int64)
    if not len(ids):
        return Summary(0, 0, 0, float("nan"))
    outcome = data.correct[ids]
    return Summary(
        count=len(ids),
        wrong=int((outcome == 0).sum()),
        known=int((outcome >= 0).sum()),
        mean_confidence=float(data.confidence[ids].mean()),
    )
