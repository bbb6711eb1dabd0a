"""Shared helpers of the benchmark suite: side-by-side timing, medians, result rows."""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # reuse the test datasets built from skimage photos


@dataclass
class Row:
    figure: str
    what: str
    value: float
    unit: str = "x"
    bar: str = ""
    ok: bool | None = None
    detail: str = ""

    def markdown(self) -> str:
        ok = "" if self.ok is None else ("yes" if self.ok else "**no**")
        return (f"| {self.figure} | {self.what} | {self.value:.3g} {self.unit} | {self.bar} | "
                f"{ok} | {self.detail} |")


def machine() -> str:
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cores} cores, torch {torch.__version__} with {torch.get_num_threads()} threads"


def interleaved(fns: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Run each candidate once per round, round after round, and take per-candidate medians.

    Interleaving keeps a noisy neighbour from favouring whichever candidate ran last.
    Each fn returns the measure itself (seconds, or images/s).
    """
    results: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            results[name].append(fn())
    return {k: statistics.median(v) for k, v in results.items()}


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def real_size_jpegs(root: Path, n: int, long_side: int = 1600, seed: int = 0) -> list[Path]:
    """``n`` camera-sized JPEGs: random crops of skimage photos upscaled to ``long_side``."""
    import numpy as np
    from PIL import Image

    from helpers import PHOTOS, photo, random_crops

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sources = [photo(p) for p in PHOTOS]
    paths = []
    for i in range(n):
        crop = random_crops(sources[i % len(sources)], 1, rng)[0]
        s = long_side / max(crop.size)
        img = crop.resize((int(crop.width * s), int(crop.height * s)), Image.BICUBIC)
        path = root / f"img_{i:05d}.jpg"
        img.save(path, quality=90)
        paths.append(path)
    return paths
