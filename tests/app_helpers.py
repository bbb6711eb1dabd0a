"""Helpers for the app tests: a hand-written run directory and a stand-in CAM engine."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

EVIL = "<img src=x onerror=alert(1)>"


def _image(rng: np.random.Generator, w: int, h: int, tint: tuple[int, int, int]) -> Image.Image:
    """A real photo-like image: smooth gradient + noise in a class colour."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx / w) * t + (yy / h) * (255 - t) / 2 for t in tint], -1)
    arr = np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def make_run(
    root: Path,
    n: int = 24,
    *,
    classes: tuple[str, ...] = ("cat", "dog", EVIL),
    labelled: bool = True,
    wrong_every: int = 5,
    seed: int = 0,
    evil_names: bool = True,
) -> Path:
    """A small run directory following store.py's layout (format version 1), with real JPEG
    and PNG files; every ``wrong_every``-th image is misclassified."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    run = root / "run"
    data = run / "data-test"
    data.mkdir(parents=True, exist_ok=True)
    k = len(classes)
    tints = [(220, 60, 40), (40, 160, 220), (90, 200, 90), (200, 200, 40)]
    rows = []
    probs = np.zeros((n, k), np.float32)
    for i in range(n):
        true = i % k
        pred = (true + 1) % k if wrong_every and i % wrong_every == wrong_every - 1 else true
        w, h = (96 + 8 * (i % 3), 72 + 6 * (i % 4))
        ext = ".png" if i % 4 == 3 else ".jpg"
        name = f"{EVIL}_{i}{ext}" if evil_names and i == 1 else f"img_{i:03d}{ext}"
        path = images / name
        _image(rng, w, h, tints[true % len(tints)]).save(path)
        p = rng.dirichlet(np.ones(k) * 0.5).astype(np.float32)
        p[pred] += 2.0
        p /= p.sum()
        probs[i] = p
        order = np.argsort(-p)[: min(5, k)]
        label = classes[true] if labelled else None
        rows.append({
            "id": i,
            "path": str(path.resolve()),
            "relpath": name,
            "name": name,
            "label": label,
            "label_index": true if labelled else -1,
            "pred": classes[pred],
            "pred_index": pred,
            "confidence": float(p[pred]),
            "correct": (true == pred) if labelled else None,
            "x": float(true * 5 + rng.normal()),
            "y": float(rng.normal() * 2),
            "top5_labels": [classes[j] for j in order],
            "top5_probs": [float(p[j]) for j in order],
            "width": w,
            "height": h,
            "hash": hashlib.sha256(path.read_bytes()).hexdigest()[:32],
            "split": "train" if i % 2 else None,
        })
    table = pd.DataFrame(rows)
    table["label"] = pd.array(table["label"], dtype="string")
    table["correct"] = pd.array(table["correct"], dtype="boolean")
    table["confidence"] = table["confidence"].astype(np.float32)
    table["x"] = table["x"].astype(np.float32)
    table["y"] = table["y"].astype(np.float32)
    table.to_parquet(data / "table.parquet", index=False)
    np.save(data / "features.npy", rng.normal(size=(n, 8)).astype(np.float32))
    np.save(data / "probs.npy", probs)
    meta = {
        "format": "featscope-run",
        "format_version": 1,
        "build_id": "test",
        "data_dir": data.name,
        "model": {"name": "efficientnet-lite0", "weights": None},
        "class_names": list(classes),
        "preprocess": {"resize": 256, "crop": 224, "mean": [0.5] * 3, "std": [0.5] * 3},
    }
    (run / "run.json").write_text(json.dumps(meta), encoding="utf-8")
    return run


class FakeResult(types.SimpleNamespace):
    pass


class FakeEngine:
    """Stands in for cam.CamEngine: a heatmap that depends on the target class, optional
    delay, records every call, honours ``cancel`` and reports ``progress``."""

    def __init__(self, delay: float = 0.0, steps: int = 1):
        self.delay = delay
        self.steps = steps
        self.calls: list[tuple[int | None, str, object]] = []
        self.lock = threading.Lock()
        self.bundle = types.SimpleNamespace(device="cpu")
        self.running = 0
        self.max_running = 0

    def compute(self, image, method="gradcam", target=None, *, key=None, progress=None,
                cancel=None):
        from featscope.cam import CamCancelled

        with self.lock:
            self.calls.append((target, method, key))
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            t0 = time.perf_counter()
            for step in range(self.steps):
                if cancel is not None and cancel.is_set():
                    raise CamCancelled()
                time.sleep(self.delay / self.steps)
                if progress is not None:
                    progress(step + 1, self.steps)
            if cancel is not None and cancel.is_set():
                raise CamCancelled()
            w, h = image.size
            yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
            t = 0 if target is None else int(target)
            heat = (np.sin(xx / w * (t + 1) * 3.1) * np.cos(yy / h * 2.0) + 1) / 2
            heat[:, : w // 10] = np.nan  # like a centre crop that cut the left edge
            return FakeResult(heatmap=heat, heatmap_original=heat.astype(np.float32),
                              target=t, method=method, probs=None,
                              seconds=time.perf_counter() - t0)
        finally:
            with self.lock:
                self.running -= 1


def fake_cam_module(estimate: float | None = 120.0):
    """featscope.cam with ``estimate_seconds`` that needs no real model."""
    from featscope import cam

    mod = types.SimpleNamespace(**{k: getattr(cam, k) for k in dir(cam) if not k.startswith("__")})
    mod.estimate_seconds = lambda method, bundle: estimate if method in cam.SLOW_METHODS else 0.1
    return mod


def make_app(run_path, engine=None, estimate=120.0):
    """The real app for ``run_path`` with a stand-in engine (no torch model)."""
    from featscope.app.cams import ModelHandle
    from featscope.app.server import create_app

    engine = engine or FakeEngine()
    handle = ModelHandle.ready_with(engine, fake_cam_module(estimate))
    app = create_app(run_path, device="cpu", model=handle)
    return app, engine


@contextmanager
def serving(run_path) -> Iterator[tuple[str, Any]]:
    """The app of ``run_path`` (stand-in engine) on a real waitress server on a free port:
    yields its URL and the app's context; stops the server afterwards."""
    from featscope.app.server import BackgroundServer

    app, _ = make_app(run_path)
    with BackgroundServer.start(app=app) as srv:
        yield srv.url, app.featscope


def json_dicts(node: Any) -> Iterator[dict]:
    """Every dict in a JSON tree (a Dash layout, a figure), depth first."""
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from json_dicts(v)
    elif isinstance(node, list):
        for v in node:
            yield from json_dicts(v)


def make_big_run(root: Path, n: int = 100_000, n_classes: int = 10, seed: int = 0) -> Path:
    """A run of ``n`` synthetic points (clusters per class, 15 % misclassified) whose rows
    share a few real image files: for payload and smoothness checks at scale."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    files = []
    for k in range(4):
        path = images / f"shared_{k}.jpg"
        _image(rng, 80, 60, (60 * k, 120, 200)).save(path)
        files.append(path)
    run = root / "run"
    data = run / "data-big"
    data.mkdir(parents=True, exist_ok=True)
    classes = [f"class_{i}" for i in range(n_classes)]
    true = rng.integers(0, n_classes, n)
    wrong = rng.random(n) < 0.15
    pred = np.where(wrong, (true + rng.integers(1, n_classes, n)) % n_classes, true)
    centres = rng.normal(0, 10, (n_classes, 2))
    xy = centres[true] + rng.normal(0, 1.5, (n, 2))
    conf = np.where(wrong, rng.uniform(0.2, 0.7, n), rng.uniform(0.5, 1.0, n))
    names = np.array(classes, dtype=object)
    paths = [str(files[i % 4].resolve()) for i in range(n)]
    table = pd.DataFrame({
        "id": np.arange(n, dtype=np.int64),
        "path": paths,
        "relpath": [f"img_{i}.jpg" for i in range(n)],
        "name": [f"img_{i}.jpg" for i in range(n)],
        "label": pd.array(names[true], dtype="string"),
        "label_index": true.astype(np.int64),
        "pred": names[pred].astype(str),
        "pred_index": pred.astype(np.int64),
        "confidence": conf.astype(np.float32),
        "correct": pd.array(~wrong, dtype="boolean"),
        "x": xy[:, 0].astype(np.float32),
        "y": xy[:, 1].astype(np.float32),
        "top5_labels": [[names[p]] for p in pred],
        "top5_probs": [[float(c)] for c in conf],
        "width": np.full(n, 80),
        "height": np.full(n, 60),
        "hash": [f"h{i % 4}" for i in range(n)],
        "split": pd.array([None] * n, dtype="string"),
    })
    table.to_parquet(data / "table.parquet", index=False)
    np.save(data / "features.npy", np.zeros((n, 2), np.float32))
    probs = np.full((n, n_classes), 0.0, np.float32)
    probs[np.arange(n), pred] = conf
    np.save(data / "probs.npy", probs)
    meta = {"format": "featscope-run", "format_version": 1, "build_id": "big",
            "data_dir": data.name, "model": {"name": "efficientnet-lite0"},
            "class_names": classes}
    (run / "run.json").write_text(json.dumps(meta), encoding="utf-8")
    return run


def add_neighbours_and_scores(run_dir: Path, proj3d: bool = False) -> Path:
    """Give a hand-written run what ``featscope build`` stores since format 1 gained them:
    the exact neighbour table of its features, the suspect scores (the project's own
    functions) and, optionally, a 3-D projection."""
    from featscope.neighbors import exact_knn
    from featscope.scores import add_scores
    from featscope.store import load

    run = load(run_dir)
    table = exact_knn(np.asarray(run.features), k=min(30, len(run) - 1))
    np.save(run.data_dir / "neighbors.npy", table.index)
    np.save(run.data_dir / "neighbor_sims.npy", table.similarity)
    add_scores(run.table.copy(), table).to_parquet(run.data_dir / "table.parquet", index=False)
    if proj3d:
        rng = np.random.default_rng(3)
        np.save(run.data_dir / "proj3d.npy", rng.normal(size=(len(run), 3)).astype(np.float32))
    return Path(run_dir)
