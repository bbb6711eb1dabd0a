"""CAMs for the app: the model loaded in the background, a bounded cache, latest-wins.

* ``ModelHandle`` loads the model (and its ``CamEngine``) in a thread at start-up, so the
  first paint never waits for torch; CAM requests wait for it.
* ``CamService.get`` computes one (image, class, method) CAM for an interactive request.
  Results are cached in memory (LRU, bounded in bytes), so the same click again is instant.
  Per image only one interactive computation runs at a time (a lock per image); a request
  that is no longer the newest for its image when its turn comes returns early
  (``Superseded``) and a running one is cancelled when a newer request for another class or
  method of the same image arrives, so clicks never queue up stale work.
* Slow methods (``cam.SLOW_METHODS``) run as background jobs (see jobs.py) through
  ``CamService.job``; they do not take the image lock, so fast CAMs of the same image stay
  available while a ScoreCAM runs for minutes.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from PIL import Image

from ..errors import FeatscopeError
from .thumbs import load_image

log = logging.getLogger(__name__)

CAM_MAX_SIDE = 1024  # CAM images are made at display size; CSS scales them onto the original
KINDS = ("overlay", "heatmap")
MODEL_WAIT_S = 300.0


class Superseded(Exception):
    """A newer CAM request for the same image arrived; this one gave up."""


@dataclass(frozen=True)
class CamKey:
    image_id: int
    target: int
    method: str


@dataclass
class CamImages:
    key: CamKey
    heatmap_png: bytes  # jet colours, transparent where the model never looked
    overlay_jpeg: bytes  # heatmap blended onto the original
    seconds: float  # CAM computation time (without encoding)
    width: int
    height: int

    @property
    def nbytes(self) -> int:
        return len(self.heatmap_png) + len(self.overlay_jpeg)

    def image(self, kind: str) -> tuple[bytes, str]:
        if kind == "heatmap":
            return self.heatmap_png, "image/png"
        if kind == "overlay":
            return self.overlay_jpeg, "image/jpeg"
        raise ValueError(kind)


def import_cam() -> ModuleType:
    """featscope.cam (imports torch and pytorch-grad-cam: seconds, so never at start-up)."""
    from .. import cam

    return cam


class ModelHandle:
    """The CAM module and engine, loaded in a background thread.

    ``factory(cam_module)`` builds the engine. The module is available as soon as it is
    imported (before the model has loaded), for the method list.
    """

    def __init__(
        self,
        factory: Callable[[ModuleType], Any],
        module_loader: Callable[[], ModuleType] = import_cam,
    ):
        self._factory = factory
        self._module_loader = module_loader
        self._module: ModuleType | None = None
        self._module_ready = threading.Event()
        self._ready = threading.Event()
        self._engine: Any = None
        self._error: str | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.seconds: float | None = None

    def start(self) -> ModelHandle:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._load, name="featscope-model",
                                                daemon=True)
                self._thread.start()
        return self

    def _load(self) -> None:
        t0 = time.perf_counter()
        try:
            self._module = self._module_loader()
            self._module_ready.set()
            self._engine = self._factory(self._module)
        except Exception as exc:  # noqa: BLE001 - shown in the app, the map keeps working
            log.exception("could not load the model for CAMs")
            self._error = str(exc) or type(exc).__name__
        finally:
            self.seconds = time.perf_counter() - t0
            self._module_ready.set()
            self._ready.set()

    @property
    def status(self) -> str:
        if not self._ready.is_set():
            return "loading"
        return "failed" if self._error else "ready"

    @property
    def error(self) -> str | None:
        return self._error

    def module(self, timeout: float | None = MODEL_WAIT_S) -> ModuleType:
        """featscope.cam, once imported (waits for it)."""
        self.start()
        if not self._module_ready.wait(timeout) or self._module is None:
            raise FeatscopeError(
                f"CAMs are unavailable: {self._error}" if self._error
                else "CAMs are still loading; try again in a moment"
            )
        return self._module

    def module_if_ready(self) -> ModuleType | None:
        return self._module if self._module_ready.is_set() else None

    def get(self, timeout: float | None = MODEL_WAIT_S) -> Any:
        self.start()
        if not self._ready.wait(timeout):
            raise FeatscopeError("the model is still loading; try again in a moment")
        if self._error:
            raise FeatscopeError(f"the model could not be loaded: {self._error}")
        return self._engine

    @classmethod
    def ready_with(cls, engine: Any, module: ModuleType | None = None) -> ModelHandle:
        """A handle that already holds ``engine`` (tests, notebooks that built one)."""
        h = cls(lambda _mod: engine)
        h._module = module or import_cam()
        h._engine = engine
        h.seconds = 0.0
        h._module_ready.set()
        h._ready.set()
        h._thread = threading.current_thread()
        return h


def _downscale(image: Image.Image, heat: np.ndarray, max_side: int):
    """Image and heatmap at most ``max_side`` px; NaN (never seen) stays NaN."""
    w, h = image.size
    if max(w, h) <= max_side:
        return image, heat
    s = max_side / max(w, h)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    seen = np.isfinite(heat)
    filled = np.where(seen, heat, 0.0).astype(np.float32)
    small = np.array(Image.fromarray(filled).resize(size, Image.BILINEAR), np.float32)
    mask = np.asarray(Image.fromarray(seen.astype(np.uint8) * 255).resize(size, Image.NEAREST))
    small[mask == 0] = np.nan
    return image.resize(size, Image.LANCZOS), small


class CamService:
    """Interactive and background CAMs of one run, cached."""

    def __init__(
        self,
        image_path: Callable[[int], Path],
        model: ModelHandle,
        *,
        cache_bytes: int = 256 << 20,
        max_side: int = CAM_MAX_SIDE,
        image_loader: Callable[[Path], Image.Image] = load_image,
        cache_key: Callable[[int], Any] | None = None,
    ):
        self.image_path = image_path
        self.model = model
        self.cache_bytes = cache_bytes
        self.max_side = max_side
        self.image_loader = image_loader
        self.cache_key = cache_key or (lambda i: i)
        self._cache: OrderedDict[CamKey, CamImages] = OrderedDict()
        self._cache_size = 0
        self._cache_lock = threading.Lock()
        self._state = threading.Lock()
        self._image_locks: dict[int, threading.Lock] = {}
        self._latest: dict[int, CamKey] = {}
        self._running: dict[int, tuple[CamKey, threading.Event]] = {}
        self.computed = 0  # how many CAMs were actually computed (tests, diagnostics)

    @property
    def cam(self) -> ModuleType:
        return self.model.module()

    # -- cache ----------------------------------------------------------------------------

    def cached(self, key: CamKey) -> CamImages | None:
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
            return hit

    def remember(self, item: CamImages) -> None:
        """Put a result back (a finished job's, after the LRU dropped it)."""
        self._store(item)

    def _store(self, item: CamImages) -> None:
        with self._cache_lock:
            old = self._cache.pop(item.key, None)
            if old is not None:
                self._cache_size -= old.nbytes
            self._cache[item.key] = item
            self._cache_size += item.nbytes
            while self._cache_size > self.cache_bytes and len(self._cache) > 1:
                _, dropped = self._cache.popitem(last=False)
                self._cache_size -= dropped.nbytes

    # -- computing ------------------------------------------------------------------------

    def is_slow(self, method: str) -> bool:
        return method in self.cam.SLOW_METHODS

    def estimate_seconds(self, method: str, timeout: float | None = 0.0) -> float | None:
        """``cam.estimate_seconds`` once the model is there; None while it loads."""
        try:
            engine = self.model.get(timeout=timeout)
        except FeatscopeError:
            return None
        return self.cam.estimate_seconds(method, engine.bundle)

    def _image_lock(self, image_id: int) -> threading.Lock:
        with self._state:
            return self._image_locks.setdefault(image_id, threading.Lock())

    def get(self, key: CamKey, *, model_timeout: float | None = MODEL_WAIT_S) -> CamImages:
        """The CAM for an interactive request (cached; latest request per image wins)."""
        hit = self.cached(key)
        if hit is not None:
            return hit
        with self._state:
            self._latest[key.image_id] = key
            running = self._running.get(key.image_id)
            if running is not None and running[0] != key:
                running[1].set()  # the user moved on: stop the stale computation
        with self._image_lock(key.image_id):
            hit = self.cached(key)
            if hit is not None:
                return hit
            cancel = threading.Event()
            with self._state:
                if self._latest.get(key.image_id) != key:
                    raise Superseded(key)
                self._running[key.image_id] = (key, cancel)
            try:
                return self._compute(key, cancel=cancel, model_timeout=model_timeout)
            except self.cam.CamCancelled as exc:
                raise Superseded(key) from exc
            finally:
                with self._state:
                    if self._running.get(key.image_id, (None,))[0] == key:
                        del self._running[key.image_id]

    def job(self, key: CamKey) -> Callable[[Callable[[int, int], None], threading.Event], Any]:
        """A background-job function (jobs.JobRegistry) computing ``key`` into the cache."""

        def run(progress: Callable[[int, int], None], cancel: threading.Event) -> CamImages:
            hit = self.cached(key)
            if hit is not None:
                progress(1, 1)
                return hit
            return self._compute(key, progress=progress, cancel=cancel)

        return run

    def _compute(
        self,
        key: CamKey,
        *,
        progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
        model_timeout: float | None = MODEL_WAIT_S,
    ) -> CamImages:
        engine = self.model.get(timeout=model_timeout)
        path = self.image_path(key.image_id)
        image = self.image_loader(path)
        result = engine.compute(
            image,
            method=key.method,
            target=key.target,
            key=self.cache_key(key.image_id),
            progress=progress,
            cancel=cancel,
        )
        small, heat = _downscale(image, result.heatmap_original, self.max_side)
        heat_buf = io.BytesIO()
        self.cam.colorize(heat).save(heat_buf, format="PNG", compress_level=3)
        over_buf = io.BytesIO()
        self.cam.overlay(small, heat, alpha=0.5).save(over_buf, format="JPEG", quality=90)
        item = CamImages(
            key=key,
            heatmap_png=heat_buf.getvalue(),
            overlay_jpeg=over_buf.getvalue(),
            seconds=float(result.seconds),
            width=small.width,
            height=small.height,
        )
        self._store(item)
        self.computed += 1
        log.debug("CAM %s in %.2f s", key, item.seconds)
        return item
