"""The run directory: a versioned, documented layout that is complete or reported incomplete.

Layout (format version 1)::

    RUN/
      run.json                 # written last, atomically; names the current data folder
      data-<build_id>/
        table.parquet          # one row per image (see docs/run-format.md)
        features.npy           # float32 [N, D], memory-mappable, row i = id i
        probs.npy              # float32 [N, C], softmax probabilities, row i = id i
        neighbors.npy          # int32 [N, k], ids of the k nearest images (cosine, features)
        neighbor_sims.npy      # float32 [N, k], their cosine similarities
        proj3d.npy             # float32 [N, 3], only with --dims 3
      cache/<model_key>/       # content-addressed extraction chunks (resume + incremental)
      thumbs/                  # thumbnails, made once by the app, keyed by image hash

A build writes a fresh ``data-<build_id>`` folder and then swaps ``run.json`` with one
atomic rename, so readers always see the previous complete build or the new one.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import FeatscopeError, IncompleteRunError

FORMAT_NAME = "featscope-run"
FORMAT_VERSION = 1
RUN_JSON = "run.json"


@dataclass
class Run:
    """A stored run: the per-image table, memory-mapped features and probabilities, metadata."""

    path: Path
    meta: dict[str, Any]
    table: pd.DataFrame
    features: np.ndarray
    probs: np.ndarray
    proj3d: np.ndarray | None = None
    neighbor_index: np.ndarray | None = None
    neighbor_sims: np.ndarray | None = None

    def neighbors(self, image_id: int, k: int = 10) -> pd.DataFrame:
        """The ``k`` nearest images to ``image_id`` in feature space (cosine), nearest first."""
        from .neighbors import NeighborTable

        if self.neighbor_index is None:
            raise FeatscopeError(f"{self.path}: this run has no neighbour table; rebuild it")
        pairs = NeighborTable(self.neighbor_index, self.neighbor_sims).of(int(image_id), k)
        ids = [i for i, _ in pairs]
        out = self.table.iloc[ids][["id", "name", "label", "pred", "confidence", "path"]].copy()
        out.insert(1, "similarity", [s for _, s in pairs])
        return out.reset_index(drop=True)

    def suspects(self, by: str = "score_neighbor_disagreement") -> pd.DataFrame:
        """Images ranked by a suspect score (see featscope.scores.SCORE_COLUMNS)."""
        from .scores import suspects

        return suspects(self.table, by)

    def selection(self, ids: Iterable[int]) -> pd.DataFrame:
        """Selected images as the app exports them: id, path, label, pred, confidence, x, y."""
        from .app.selection import selection_table

        return selection_table(self.table, ids)

    def confusion(self) -> pd.DataFrame:
        """Confusion matrix (true label x predicted label) of the labelled images."""
        from .scores import confusion

        return confusion(self.table, self.class_names)

    @property
    def class_names(self) -> list[str]:
        return list(self.meta.get("class_names", []))

    @property
    def has_labels(self) -> bool:
        return bool(self.table["label"].notna().any()) if len(self.table) else False

    @property
    def data_dir(self) -> Path:
        return self.path / self.meta["data_dir"]

    @property
    def skipped(self) -> list[dict[str, str]]:
        return list(self.meta.get("skipped", []))

    def image_path(self, image_id: int) -> Path:
        """Path of an image by its integer id; raises KeyError for ids not in the index."""
        if not isinstance(image_id, (int, np.integer)) or not 0 <= image_id < len(self.table):
            raise KeyError(image_id)
        return Path(self.table["path"].iat[int(image_id)])

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        return (
            f"Run({str(self.path)!r}, images={len(self)}, model={self.meta['model']['name']!r}, "
            f"classes={len(self.class_names)})"
        )


def data_dir_name(build_id: str) -> str:
    return f"data-{build_id}"


def read_meta(path: Path) -> dict[str, Any]:
    path = Path(path)
    meta_path = path / RUN_JSON
    if not path.exists():
        raise FeatscopeError(f"{path}: no such run directory")
    if not meta_path.exists():
        raise IncompleteRunError(
            f"{path}: no complete run here (no {RUN_JSON}); run 'featscope build' to make one"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IncompleteRunError(f"{meta_path}: unreadable run metadata ({exc})") from exc
    if meta.get("format") != FORMAT_NAME:
        raise FeatscopeError(f"{meta_path}: not a featscope run")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise FeatscopeError(
            f"{meta_path}: run format {meta['format_version']} is newer than this featscope "
            f"understands ({FORMAT_VERSION}); upgrade featscope"
        )
    return meta


def load(path: str | Path, mmap: bool = True) -> Run:
    """Reopen a stored run: table as a DataFrame, features and probabilities memory-mapped."""
    path = Path(path).expanduser().resolve()
    meta = read_meta(path)
    data = path / meta["data_dir"]
    try:
        table = pd.read_parquet(data / "table.parquet")
        mode = "r" if mmap else None
        features = np.load(data / "features.npy", mmap_mode=mode)
        probs = np.load(data / "probs.npy", mmap_mode=mode)
        p3 = data / "proj3d.npy"
        proj3d = np.load(p3) if p3.exists() else None
        nb = data / "neighbors.npy"
        nb_index = np.load(nb, mmap_mode=mode) if nb.exists() else None
        nb_sims = np.load(data / "neighbor_sims.npy", mmap_mode=mode) if nb.exists() else None
    except (OSError, ValueError) as exc:
        raise IncompleteRunError(f"{data}: run data is damaged or missing ({exc})") from exc
    if len(features) != len(table) or len(probs) != len(table):
        raise IncompleteRunError(f"{data}: table and arrays disagree in length")
    return Run(path=path, meta=meta, table=table, features=features, probs=probs, proj3d=proj3d,
               neighbor_index=nb_index, neighbor_sims=nb_sims)


def remove_stale_data_dirs(run_dir: Path, keep: str) -> None:
    """Delete data folders of earlier or interrupted builds, keeping the current one."""
    for child in Path(run_dir).glob("data-*"):
        if child.is_dir() and child.name != keep:
            shutil.rmtree(child, ignore_errors=True)
