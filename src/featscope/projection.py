"""Project feature vectors to 2-D (or 3-D): L2-normalise, PCA to 50 dims, then UMAP.

The k nearest neighbours are computed by scikit-learn (compiled BLAS) and handed to UMAP as
``precomputed_knn``, so umap-learn never compiles or runs its NN-descent search.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .neighbors import cosine_topk, normalise

log = logging.getLogger(__name__)


@dataclass
class UMAPConfig:
    """Parameters of the projection; everything that changes the result is in here."""

    n_components: int = 2
    n_neighbors: int = 15
    min_dist: float = 0.1
    metric: str = "cosine"
    pca_dims: int = 50
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Projection:
    coords: np.ndarray  # float32 [N, n_components]
    info: dict[str, Any] = field(default_factory=dict)


def project(features: np.ndarray, config: UMAPConfig) -> Projection:
    """Fit the projection of ``features`` [N, D]; small inputs fall back gracefully."""
    start = time.perf_counter()
    x = np.asarray(features, dtype=np.float32)
    n, k = len(x), config.n_components
    info: dict[str, Any] = {"n": n, **config.to_dict()}
    if n == 0:
        raise ValueError("nothing to project")
    x = normalise(x)
    if n <= 3:
        coords = _pca(x, min(k, n), config.seed) if n > 1 else np.zeros((1, 0), np.float32)
        coords = _pad(coords, k)
        info["method"] = f"PCA only ({n} image{'s' if n > 1 else ''}: too few for UMAP)"
    else:
        if x.shape[1] > config.pca_dims and n > config.pca_dims:
            x = _pca(x, config.pca_dims, config.seed)
            info["pca"] = f"{features.shape[1]} -> {config.pca_dims}"
        neighbors = max(2, min(config.n_neighbors, n - 1))
        info["n_neighbors_used"] = neighbors
        coords = _umap(x, neighbors, config)
        info["method"] = "PCA + UMAP" if "pca" in info else "UMAP"
        if neighbors != config.n_neighbors:
            info["note"] = f"n_neighbors clipped to {neighbors} for {n} images"
    info["seconds"] = round(time.perf_counter() - start, 3)
    return Projection(coords.astype(np.float32), info)


def place_new_points(
    old_features: np.ndarray, old_coords: np.ndarray, new_features: np.ndarray, k: int
) -> np.ndarray:
    """Coordinates for new points: the similarity-weighted mean of the map positions of their
    ``k`` nearest old points (cosine), as UMAP's own ``transform`` initialises them."""
    # Plain BLAS in blocks: a few new points need no kNN library (importing one costs ~1 s).
    near = cosine_topk(normalise(np.asarray(new_features, np.float32)),
                       normalise(np.asarray(old_features, np.float32)), k)
    idx, dists = near.index, 1.0 - near.similarity
    weights = np.exp(-(dists - dists[:, :1]) / np.maximum(dists.std(axis=1, keepdims=True), 1e-6))
    weights /= weights.sum(axis=1, keepdims=True)
    return np.einsum("nk,nkd->nd", weights, old_coords[idx]).astype(np.float32)


def _bounded_memory():
    """Brute-force kNN works through the distance matrix in blocks of at most 128 MB
    (scikit-learn's default allows 1 GB), so memory stays flat for large runs."""
    import sklearn

    return sklearn.config_context(working_memory=128)


def knn(x: np.ndarray, k: int, metric: str = "cosine") -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours (self included first), as UMAP expects them."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k, metric=metric, algorithm="brute")
    nn.fit(x)
    with _bounded_memory():
        dists, idx = nn.kneighbors(x)
    return idx.astype(np.int32), np.maximum(dists, 0).astype(np.float32)


def _enable_numba_disk_cache() -> None:
    """umap-learn compiles several numba functions without ``cache=True`` on every process
    start (seconds each); turning the disk cache on for them makes later builds skip that."""
    global _CACHE_ENABLED
    if _CACHE_ENABLED:
        return
    _CACHE_ENABLED = True
    try:
        import umap.layouts
        import umap.spectral
        import umap.umap_
        import umap.utils
        from numba.core.registry import CPUDispatcher
    except ImportError:  # pragma: no cover
        return
    for mod in (umap.umap_, umap.layouts, umap.spectral, umap.utils):
        for obj in list(vars(mod).values()):
            if isinstance(obj, CPUDispatcher) and type(obj._cache).__name__ == "NullCache":
                try:
                    obj.enable_caching()
                except Exception:  # noqa: BLE001 - e.g. read-only install: compile as usual
                    log.debug("numba cache unavailable for %s", obj)


_CACHE_ENABLED = False


def _umap(x: np.ndarray, neighbors: int, config: UMAPConfig) -> np.ndarray:
    import umap

    _enable_numba_disk_cache()

    idx, dists = knn(x, neighbors, config.metric)
    n = len(x)
    reducer = umap.UMAP(
        n_components=config.n_components,
        n_neighbors=neighbors,
        min_dist=config.min_dist,
        metric=config.metric,
        random_state=config.seed,
        precomputed_knn=(idx, dists, None),
        # Spectral init needs a few more points than dimensions; random works for any size.
        init="spectral" if n > 2 * (config.n_components + 2) else "random",
        n_jobs=1,
    )
    with warnings.catch_warnings():
        # Expected: no NNDescent search index (we never call transform) and the
        # single-thread note that comes with a fixed random_state.
        warnings.filterwarnings("ignore", message=".*knn_search_index.*")
        warnings.filterwarnings("ignore", message=".*n_jobs.*")
        warnings.filterwarnings("ignore", message=".*random_state.*")
        try:
            return np.asarray(reducer.fit_transform(x), dtype=np.float32)
        except Exception as exc:  # noqa: BLE001 - degenerate inputs: fall back to PCA
            log.warning("UMAP failed on %d points (%s); using PCA instead", n, exc)
            return _pad(_pca(x, min(config.n_components, n), config.seed), config.n_components)


def _pca(x: np.ndarray, dims: int, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    dims = max(1, min(dims, x.shape[0], x.shape[1]))
    return PCA(n_components=dims, random_state=seed).fit_transform(x).astype(np.float32)


def _pad(coords: np.ndarray, k: int) -> np.ndarray:
    if coords.shape[1] >= k:
        return coords[:, :k]
    return np.hstack([coords, np.zeros((len(coords), k - coords.shape[1]), np.float32)])
