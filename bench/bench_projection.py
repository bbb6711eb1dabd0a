"""P4: projection cost (every one-time compilation included) against extraction, and
PCA-50 + UMAP against UMAP on raw features: speed and trustworthiness (k=10)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import Row, real_size_jpegs
from featscope.projection import UMAPConfig, project

_FRESH = """
import json, sys, time
t = time.perf_counter()
import numpy as np
from featscope.projection import UMAPConfig, project
x = np.load(sys.argv[1])
p = project(x, UMAPConfig())
print(json.dumps({"seconds": time.perf_counter() - t}))
"""


def _fresh_process_projection(features: Path, numba_cache: Path) -> float:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(numba_cache)}
    out = subprocess.run([sys.executable, "-c", _FRESH, str(features)], check=True,
                         capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])["seconds"]


def synthetic_features(n: int, dim: int = 2048, clusters: int = 20, seed: int = 0) -> np.ndarray:
    """Non-negative, clustered, low intrinsic dimension: shaped like pooled CNN features."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(clusters, 16))[rng.integers(0, clusters, n)]
    latent += 0.35 * rng.normal(size=(n, 16))
    w = rng.normal(size=(16, dim)) / 4
    return np.maximum(latent @ w + 0.1 * rng.normal(size=(n, dim)), 0).astype(np.float32)


def run(quick: bool = False) -> list[Row]:
    import featscope

    rows: list[Row] = []
    n_run = 60 if quick else 1000
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        real_size_jpegs(data, n_run, long_side=640)
        run_ = featscope.build(data, tmp / "run", model="resnet50", weights="none",
                               progress=False)
        extract_s = run_.meta["timings"]["extract"]
        np.save(tmp / "f.npy", np.asarray(run_.features))
        cold = _fresh_process_projection(tmp / "f.npy", tmp / "numba-cold")
        warm = _fresh_process_projection(tmp / "f.npy", tmp / "numba-cold")
    rows.append(Row("P4", f"projection / extraction ({n_run}-image ResNet-50 run, fresh "
                    "process, cold numba cache)", cold / extract_s, bar="<= 0.25",
                    ok=cold / extract_s <= 0.25,
                    detail=f"extraction {extract_s:.1f} s, projection {cold:.1f} s cold, "
                    f"{warm:.1f} s with numba's disk cache warm"))

    n = 2000 if quick else 20000
    x = synthetic_features(n)
    t = time.perf_counter()
    with_pca = project(x, UMAPConfig()).coords
    t_pca = time.perf_counter() - t
    t = time.perf_counter()
    raw = project(x, UMAPConfig(pca_dims=x.shape[1])).coords
    t_raw = time.perf_counter() - t
    tw_pca, tw_raw = _trust(x, with_pca), _trust(x, raw)
    rows.append(Row("P4", f"UMAP on raw 2048-d / PCA-50 + UMAP time ({n} points)",
                    t_raw / t_pca, detail=f"{t_raw:.1f} s vs {t_pca:.1f} s"))
    rows.append(Row("P4", "trustworthiness k=10: raw - PCA-50", tw_raw - tw_pca, unit="",
                    bar="<= 0.02", ok=tw_raw - tw_pca <= 0.02,
                    detail=f"raw {tw_raw:.4f}, PCA-50 {tw_pca:.4f}"))
    return rows


def _trust(x: np.ndarray, emb: np.ndarray) -> float:
    from sklearn.manifold import trustworthiness

    xn = x / np.linalg.norm(x, axis=1, keepdims=True)  # the map is built on cosine distances
    return float(trustworthiness(xn, emb, n_neighbors=10))


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        print(row.markdown())
