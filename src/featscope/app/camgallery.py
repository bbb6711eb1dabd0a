"""The CAM gallery: Grad-CAM overlays of every selected image, as one background job.

A gallery is a list of ``CamKey``s (image, class, method). The job computes them in batches
through ``CamService.job`` (the same code, cache and /cam/<id> URLs as single CAMs, so a
gallery image clicked later is instant and a single CAM already seen costs nothing here),
records each image's outcome as it finishes, and stops between images when cancelled. The
page polls: finished overlays appear while the rest are computed.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .cams import CamKey, CamService

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 24
MAX_LIMIT = 200  # overlays are display-sized JPEGs: 200 of them stay well inside the cache
BATCH = 8  # images between progress updates of the tile grid
OK = "ok"


class GalleryCancelled(Exception):
    """The user cancelled the CAM gallery (or started another one)."""


def clamp_limit(raw: Any) -> int:
    try:
        value = int(raw)
    except (TypeError, ValueError):
        return DEFAULT_LIMIT
    return max(1, min(MAX_LIMIT, value))


def targets_for(table: pd.DataFrame, ids: Sequence[int], explain: str,
                class_names: Sequence[str]) -> list[int]:
    """The class each image's CAM explains: its prediction, or its true label when asked
    (images whose label is not a model class fall back to the prediction)."""
    ids = np.asarray(ids, dtype=np.int64)
    preds = table["pred_index"].to_numpy(np.int64)[ids]
    if explain != "label" or "label" not in table:
        return [int(p) for p in preds]
    index = {c: i for i, c in enumerate(class_names)}
    labels = table["label"].astype(object).to_numpy()[ids]
    return [int(index.get(str(lab), p)) if lab is not None and lab == lab else int(p)
            for lab, p in zip(labels, preds, strict=True)]


@dataclass(eq=False)
class CamGallery:
    """One gallery request and what became of each image (shared with the job thread)."""

    keys: list[CamKey]
    status: list[str | None] = field(default_factory=list)  # None: pending, OK, or the error

    def __post_init__(self) -> None:
        if not self.status:
            self.status = [None] * len(self.keys)

    @property
    def job_key(self) -> tuple[str, str]:
        text = ";".join(f"{k.image_id},{k.target},{k.method}" for k in self.keys)
        return ("cam-gallery", hashlib.sha1(text.encode()).hexdigest()[:16])

    @property
    def done(self) -> int:
        return sum(s is not None for s in self.status)


def gallery_job(cams: CamService, gallery: CamGallery, batch: int = BATCH
                ) -> Callable[[Callable[[int, int], None], threading.Event], CamGallery]:
    """A JobRegistry function computing every CAM of ``gallery`` into the app's cache."""

    def noop(_done: int, _total: int) -> None:
        pass

    def run(progress: Callable[[int, int], None], cancel: threading.Event) -> CamGallery:
        total = len(gallery.keys)
        progress(0, total)
        for start in range(0, total, max(1, batch)):
            for i in range(start, min(start + batch, total)):
                if cancel.is_set():
                    raise GalleryCancelled()
                key = gallery.keys[i]
                try:
                    cams.job(key)(noop, cancel)
                    gallery.status[i] = OK
                except Exception as exc:  # noqa: BLE001 - one bad image must not stop the rest
                    if cancel.is_set():
                        raise GalleryCancelled() from exc
                    log.warning("CAM gallery: %s failed: %s", key, exc)
                    gallery.status[i] = f"{type(exc).__name__}: {exc}"
                progress(i + 1, total)
        return gallery

    return run


class CamGalleries:
    """The recent galleries by job key (bounded), so polls find their per-image status."""

    def __init__(self, keep: int = 8):
        self.keep = keep
        self._items: OrderedDict[Any, CamGallery] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, gallery: CamGallery) -> CamGallery:
        with self._lock:
            old = self._items.get(gallery.job_key)
            if old is not None:
                return old
            self._items[gallery.job_key] = gallery
            while len(self._items) > self.keep:
                self._items.popitem(last=False)
            return gallery

    def get(self, job_key: Any) -> CamGallery | None:
        with self._lock:
            return self._items.get(job_key)
