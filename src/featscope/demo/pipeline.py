"""``featscope demo``: dataset -> head checkpoint -> run -> app, each step reused when current.

Each finished step records a key (demo version, seed and the fingerprints of its inputs) in
``OUT/demo.json``; a later call redoes a step only when its key changed or its output is
missing or altered, so a second ``featscope demo`` goes straight to serving.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from .. import __version__
from ..atomic import write_json_atomic
from ..errors import FeatscopeError
from .dataset import MANIFEST, make_demo_dataset
from .lesson import describe, lesson_numbers
from .sources import SHORTCUT_BACKGROUND, SHORTCUT_CLASS
from .train import MODEL, train_demo_head

log = logging.getLogger(__name__)

DEMO_VERSION = 1  # bump when the recipe (images, head, map settings) changes: caches rebuild
N_PER_CLASS = 100
# Each demo class forms a few tight groups (one per background); more neighbours and a
# larger min_dist than UMAP's defaults (15, 0.1) draw one region per class instead of islands.
NEIGHBORS = 50
MIN_DIST = 0.5
STAMP = "demo.json"
# A new featscope release may change what a step produces, so it also invalidates them.
VERSION = f"{DEMO_VERSION}/featscope-{__version__}"


def default_out() -> Path:
    """``$FEATSCOPE_CACHE/demo``, else ``$XDG_CACHE_HOME/featscope/demo`` (~/.cache/...)."""
    base = os.environ.get("FEATSCOPE_CACHE")
    if not base:
        base = str(Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "featscope")
    return Path(base).expanduser() / "demo"


def run_demo(
    out: str | Path | None = None,
    serve: bool = True,
    port: int = 8050,
    open_browser: bool = False,
    seed: int = 0,
) -> Path:
    """Prepare (or reuse) the demo dataset, head and run under ``out``; serve it unless told
    not to. Returns the run directory."""
    t0 = time.perf_counter()
    out = Path(out).expanduser().resolve() if out else default_out()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FeatscopeError(f"{out}: cannot create the demo folder ({exc.strerror})") from exc
    stamps = _read_stamps(out)

    manifest = _dataset_step(out, seed, stamps)
    checkpoint = _head_step(out, seed, stamps, manifest)
    run_dir, numbers = _run_step(out, seed, stamps, manifest, checkpoint)

    log.info("demo ready in %.1f s: %s", time.perf_counter() - t0, describe(numbers))
    log.info("the lesson: show 'Misclassified only'; most wrong points are %ss that are not "
             "on %s (files %s/swapped-*). Click one: Grad-CAM shows what the model looked at",
             SHORTCUT_CLASS, SHORTCUT_BACKGROUND, SHORTCUT_CLASS)
    if serve:
        from ..app.server import serve as serve_app

        serve_app(run_dir, host="127.0.0.1", port=port, open_browser=open_browser)
    return run_dir


# --------------------------------------------------------------------------------------
# Steps


def _dataset_step(out: Path, seed: int, stamps: dict[str, Any]) -> Path:
    data = out / "data"
    manifest = data / MANIFEST
    key = {"version": VERSION, "seed": seed, "n_per_class": N_PER_CLASS}
    done = stamps.get("dataset", {})
    if done.get("key") == key and _file_sha(manifest) == done.get("manifest") \
            and _all_listed_exist(manifest):
        log.info("[1/3] demo dataset: reusing %s", data)
        return manifest
    log.info("[1/3] demo dataset: composing images (seed %d)", seed)
    t = time.perf_counter()
    make_demo_dataset(data, seed=seed, n_per_class=N_PER_CLASS)
    log.info("[1/3] demo dataset written in %.1f s", time.perf_counter() - t)
    _save_stamp(out, stamps, "dataset", key=key, manifest=_file_sha(manifest))
    return manifest


def _head_step(out: Path, seed: int, stamps: dict[str, Any], manifest: Path) -> Path:
    checkpoint = out / "head.pt"
    key = {"version": VERSION, "seed": seed, "manifest": _file_sha(manifest)}
    done = stamps.get("head", {})
    if done.get("key") == key and _file_sha(checkpoint) == done.get("checkpoint"):
        log.info("[2/3] demo classifier: reusing %s", checkpoint)
        return checkpoint
    log.info("[2/3] demo classifier: training a head on frozen %s features", MODEL)
    t = time.perf_counter()
    train_demo_head(manifest, checkpoint, out / "demo", seed=seed)
    log.info("[2/3] demo classifier saved in %.1f s: %s", time.perf_counter() - t, checkpoint)
    _save_stamp(out, stamps, "head", key=key, checkpoint=_file_sha(checkpoint))
    return checkpoint


def _run_step(
    out: Path, seed: int, stamps: dict[str, Any], manifest: Path, checkpoint: Path
) -> tuple[Path, dict[str, Any]]:
    import featscope

    run_dir = out / "demo"  # its name heads the app page
    key = {"version": VERSION, "seed": seed, "manifest": _file_sha(manifest),
           "checkpoint": _file_sha(checkpoint), "neighbors": NEIGHBORS, "min_dist": MIN_DIST}
    done = stamps.get("run", {})
    if done.get("key") == key:
        try:
            run = featscope.load(run_dir)
        except FeatscopeError as exc:
            log.info("[3/3] demo run: stored run unusable (%s); rebuilding", exc)
        else:
            if run.meta.get("build_id") == done.get("build_id"):
                log.info("[3/3] demo run: reusing %s", run_dir)
                return run_dir, lesson_numbers(run.table)
    log.info("[3/3] demo run: featscope build %s --model %s --weights %s", manifest, MODEL,
             checkpoint)
    run = featscope.build(manifest, run_dir, model=MODEL, weights=checkpoint, seed=seed,
                          neighbors=NEIGHBORS, min_dist=MIN_DIST, progress=True)
    _save_stamp(out, stamps, "run", key=key, build_id=run.meta["build_id"])
    return run_dir, lesson_numbers(run.table)


# --------------------------------------------------------------------------------------
# Stamps


def _read_stamps(out: Path) -> dict[str, Any]:
    try:
        stamps = json.loads((out / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return stamps if isinstance(stamps, dict) else {}


def _save_stamp(out: Path, stamps: dict[str, Any], step: str, **entry: Any) -> None:
    stamps[step] = entry
    write_json_atomic(out / STAMP, stamps)


def _file_sha(path: Path) -> str | None:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def _all_listed_exist(manifest: Path) -> bool:
    import csv

    with open(manifest, newline="", encoding="utf-8") as fh:
        return all((manifest.parent / row["path"]).is_file() for row in csv.DictReader(fh))
