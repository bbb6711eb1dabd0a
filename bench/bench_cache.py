"""P2: rebuilding an unchanged dataset, and adding 1% new images, against a full first build.

Each build is a fresh `featscope build` process, so start-up costs count on both sides."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Row, real_size_jpegs


def _build(data: Path, out: Path) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "featscope.cli", "build", str(data), "--out", str(out),
                    "--model", "resnet50", "--weights", "none"],
                   check=True, capture_output=True, env={**os.environ, "TQDM_DISABLE": "1"})
    return time.perf_counter() - t


def run(quick: bool = False) -> list[Row]:
    # 5,000 images: a small real dataset. Adding images has a fixed cost (importing torch and
    # torchvision, building the model: about 4 s here) that a 1,000-image build (~50 s)
    # cannot amortise; the row "add 1 image" reports that fixed cost on its own.
    n = 40 if quick else 5000
    n_new = max(1, n // 100)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = real_size_jpegs(tmp / "all", n + n_new + 1, long_side=800)
        data = tmp / "data"
        data.mkdir()
        for p in paths[:n]:
            shutil.copy(p, data / p.name)
        out = tmp / "run"
        first = _build(data, out)
        rebuild = min(_build(data, out) for _ in range(3))
        for p in paths[n : n + n_new]:
            shutil.copy(p, data / p.name)
        added = _build(data, out)
        shutil.copy(paths[-1], data / paths[-1].name)
        one = _build(data, out)
    return [
        Row("P2", f"first build / unchanged rebuild ({n} images, ResNet-50)", first / rebuild,
            bar=">= 20", ok=first / rebuild >= 20,
            detail=f"first {first:.1f} s, rebuild {rebuild:.2f} s (best of 3)"),
        Row("P2", "add 1% new images / full build", added / first, bar="<= 0.05",
            ok=added / first <= 0.05, detail=f"{n_new} new images: {added:.2f} s"),
        Row("P2", "add 1 image (the fixed cost of any update)", one, unit="s",
            detail="process start, torch + torchvision imports, model, one image, map update"),
    ]


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        print(row.markdown())
