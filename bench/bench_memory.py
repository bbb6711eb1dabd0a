"""Peak RSS of `featscope build` at 10x the images: bounded, since features go to disk in
chunks and are assembled through memory maps (tiny synthetic images and a tiny model)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from common import ROOT, Row


def _images(root: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    for c in range(4):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
    base = rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    for i in range(n):
        arr = base[i % 4] ^ rng.integers(0, 32, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(arr).save(root / f"c{i % 4}" / f"{i:06d}.png", compress_level=1)


def _peak_rss_mb(data: Path, out: Path) -> float:
    # VmHWM of this process image (ru_maxrss would carry the forking parent's peak over).
    code = (
        "import re, sys\n"
        "from featscope.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
        "print('PEAK', hwm)\n"
        "sys.exit(rc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests"), "TQDM_DISABLE": "1"}
    res = subprocess.run(
        [sys.executable, "-c", code, "build", str(data), "--out", str(out),
         "--model", "python:helpers:tiny_classifier", "--batch-size", "256"],
        capture_output=True, text=True, env=env, check=True)
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("PEAK"))
    return int(line.split()[1]) / 1024


def run(quick: bool = False) -> list[Row]:
    small, big = (1000, 10000) if quick else (10000, 100000)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _images(tmp / "small", small)
        _images(tmp / "big", big)
        rss_small = _peak_rss_mb(tmp / "small", tmp / "run_small")
        rss_big = _peak_rss_mb(tmp / "big", tmp / "run_big")
    return [Row("mem", f"peak RSS {big} / {small} images", rss_big / rss_small,
                detail=f"{rss_small:.0f} MB at {small}, {rss_big:.0f} MB at {big}")]


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        print(row.markdown())
