"""``featscope build``: images -> features and predictions -> projection -> a stored run."""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import __version__
from .atomic import save_npy, write_atomic, write_json_atomic
from .cache import FeatureStore, HashIndex
from .datasets import Dataset, discover
from .errors import FeatscopeError
from .faults import fault_point
from .freshness import inputs_signature, stored_signature
from .images import os_error_reason
from .neighbors import DEFAULT_K, NeighborTable, exact_knn
from .projection import UMAPConfig, place_new_points, project
from .scores import add_scores
from .store import FORMAT_NAME, FORMAT_VERSION, RUN_JSON, Run, data_dir_name, load
from .store import remove_stale_data_dirs as _remove_stale

if TYPE_CHECKING:
    import torch

    from .models import ModelBundle

log = logging.getLogger(__name__)
TOP_K = 5
# Up to this share of new images is placed into the existing map instead of re-fitting it.
INCREMENTAL_MAX_NEW = 0.05


def resolve_device(device: str | None) -> torch.device:
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise FeatscopeError(f"unknown device {device!r} (use auto, cpu, cuda, cuda:N)") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FeatscopeError(f"device {device!r} asked for, but no CUDA GPU is available")
    return dev


def build(
    data: str | Path,
    out: str | Path,
    *,
    model: str = "resnet50",
    weights: str | Path | None = None,
    classes: str | Path | None = None,
    trust_checkpoint: bool = False,
    feature_layer: str | None = None,
    cam_layer: str | None = None,
    device: str | None = "auto",
    precision: str = "fp32",
    batch_size: int | None = None,
    workers: int | None = None,
    seed: int = 0,
    neighbors: int = 15,
    min_dist: float = 0.1,
    dims: int = 2,
    chunk_size: int = 2048,
    max_pixels: int | None = None,
    reproject: bool = False,
    progress: bool = True,
) -> Run:
    """Build (or update) the run at ``out`` from the images at ``data``; returns the ``Run``.

    ``data`` is a folder of class sub-folders, a flat folder of images, or a CSV/Parquet
    manifest with a ``path`` column (optional ``label``, ``split`` and any other columns).
    Unchanged images are never extracted twice; a killed build resumes where it stopped.
    A few new images (up to 5%) are placed into the existing map so that it keeps its
    layout; ``reproject=True`` fits a fresh map. When nothing at all changed since the last
    build (files, model, parameters), the stored run is returned as it is.
    """
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    out = Path(out).expanduser().resolve()
    if precision not in ("fp32", "bf16"):
        raise FeatscopeError(f"unknown precision {precision!r} (fp32 or bf16)")

    ds = discover(data)
    log.info("found %d images%s (%s) in %s", len(ds.records),
             f" in {len(ds.class_names)} classes" if ds.class_names else "", ds.kind, ds.root)

    weights_arg = (str(Path(weights).expanduser().resolve()) if weights and str(weights) != "none"
                   else ("none" if weights is not None and str(weights) == "none" else None))
    classes_arg = str(Path(classes).expanduser().resolve()) if classes else None
    signature = inputs_signature(
        ds,
        {"name": str(model), "weights": weights_arg, "classes_file": classes_arg,
         "feature_layer": feature_layer, "cam_layer": cam_layer,
         "trust_checkpoint": trust_checkpoint},
        {"device": device, "precision": precision, "batch_size": batch_size, "seed": seed,
         "neighbors": neighbors, "min_dist": min_dist, "dims": dims, "max_pixels": max_pixels},
    )
    if signature and not reproject and stored_signature(out) == signature:
        try:
            run = load(out)
        except FeatscopeError:
            pass  # damaged: build it again
        else:
            log.info("run is up to date: %d images, nothing changed since its last build "
                     "(%d files skipped, listed in run.json)", len(run), len(run.skipped))
            return run

    # Heavy imports only now: an up-to-date run never needs torch.
    from .extract import ExtractSettings, extract
    from .models import ModelSpec, load_model

    dev = resolve_device(device)
    spec = ModelSpec(
        name=str(model),
        weights=weights_arg,
        classes_file=classes_arg,
        feature_layer=feature_layer,
        cam_layer=cam_layer,
        trust_checkpoint=trust_checkpoint,
    )
    t = time.perf_counter()
    bundle = load_model(spec, dataset_classes=ds.class_names or None, device=dev)
    timings["load_model"] = time.perf_counter() - t
    log.info("model %s (%s) on %s: %d classes (names from %s), CAM layer %s", spec.name,
             bundle.weights_fingerprint, dev, len(bundle.class_names),
             bundle.class_names_source, bundle.cam_layer_name)

    out.mkdir(parents=True, exist_ok=True)
    cache_dir = out / "cache"
    skipped: list[dict[str, str]] = [{"path": p, "reason": r} for p, r in ds.problems]

    # 1. Content hashes (skipping unchanged files via size + mtime).
    t = time.perf_counter()
    hashes = HashIndex(cache_dir)
    digests: list[str | None] = []
    for rec in ds.records:
        try:
            digests.append(hashes.hash(rec.path))
        except OSError as exc:
            reason = os_error_reason(exc)
            skipped.append({"path": str(rec.path), "reason": reason})
            digests.append(None)
    hashes.save()
    timings["hash"] = time.perf_counter() - t

    # 2. Extract what the cache lacks (each distinct content once).
    # Features are keyed by the backbone alone when predictions can be recomputed from them.
    feature_key = bundle.backbone_fingerprint
    store = FeatureStore(cache_dir / feature_key)
    todo: dict[str, Path] = {}
    for rec, d in zip(ds.records, digests, strict=True):
        if d is not None and d not in store and d not in todo:
            todo[d] = rec.path
    n_known = sum(1 for d in digests if d is not None) - len(todo)
    log.info("cache: %d images already extracted, %d to extract", n_known, len(todo))
    settings = ExtractSettings(batch_size=batch_size, workers=workers, precision=precision,
                               chunk_size=chunk_size, max_pixels=max_pixels, progress=progress)
    report = extract(bundle, list(todo.items()), store, settings)
    timings["extract"] = report.seconds
    if report.extracted:
        log.info("extracted %d images in %.1f s (%.1f images/s, batch %d, %d workers)",
                 report.extracted, report.seconds, report.extracted / max(report.seconds, 1e-9),
                 report.batch_size, report.workers)
    fail_reason = {p: r for p, r in report.failures}

    keep: list[int] = []
    for i, (rec, d) in enumerate(zip(ds.records, digests, strict=True)):
        if d is None:
            continue
        if d in store:
            keep.append(i)
        else:  # duplicates of a bad file share its reason
            reason = fail_reason.get(str(todo.get(d)), "could not be read")
            skipped.append({"path": str(rec.path), "reason": reason})
    if not keep:
        raise FeatscopeError(f"{ds.root}: no readable images ({len(skipped)} files skipped; "
                             f"first: {skipped[0]['path']}: {skipped[0]['reason']})"
                             if skipped else f"{ds.root}: no readable images")

    # 3. Assemble the run's arrays in a fresh data folder.
    build_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    data_dir = out / data_dir_name(build_id)
    data_dir.mkdir()
    kept_digests = [digests[i] for i in keep]
    n = len(keep)
    dim = store.feature_dim
    n_classes = len(bundle.class_names)
    features = np.lib.format.open_memmap(data_dir / "features.npy", "w+", np.float32, (n, dim))
    probs = np.lib.format.open_memmap(data_dir / "probs.npy", "w+", np.float32, (n, n_classes))
    sizes = np.zeros((n, 2), np.int32)
    recompute = bundle.probs_from_features
    store.gather(kept_digests, features, None if recompute else probs, sizes)
    if recompute:
        _softmax_into(bundle, features, probs)
    fault_point("gather")
    features.flush()
    probs.flush()

    # 4. Projection, cached by (features identity, parameters).
    config = UMAPConfig(n_components=dims, n_neighbors=neighbors, min_dist=min_dist, seed=seed)
    t = time.perf_counter()
    coords, proj_info = _project_cached(cache_dir / "projections", feature_key,
                                        kept_digests, features, config, reproject)
    timings["project"] = time.perf_counter() - t
    if dims == 3:
        np.save(data_dir / "proj3d.npy", coords.astype(np.float32))
        xy = coords[:, :2]
    else:
        xy = coords

    # 5. Feature-space neighbours (for the app's neighbour panel and the suspect scores).
    t = time.perf_counter()
    nbrs = _neighbors_cached(cache_dir / "neighbors", feature_key, kept_digests, features,
                             progress)
    save_npy(data_dir / "neighbors.npy", nbrs.index)
    save_npy(data_dir / "neighbor_sims.npy", nbrs.similarity)
    timings["neighbors"] = time.perf_counter() - t

    # 6. The table, with the suspect scores.
    table = add_scores(_make_table(ds, keep, kept_digests, probs, sizes, xy, bundle), nbrs)
    table.to_parquet(data_dir / "table.parquet", index=False)
    fault_point("write")

    # 7. Metadata last: the atomic swap of run.json makes the new build visible at once.
    timings["total"] = time.perf_counter() - t0
    meta: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "featscope_version": __version__,
        "build_id": build_id,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data_dir": data_dir.name,
        "dataset": {"source": str(Path(data).expanduser().resolve()), "kind": ds.kind,
                    "root": str(ds.root), "images": len(ds.records),
                    "extra_columns": ds.extra_columns},
        "model": bundle.describe(),
        "class_names": bundle.class_names,
        "preprocess": bundle.preprocess.to_dict(),
        "feature_dim": dim,
        "params": {"device": str(dev), "precision": precision, "batch_size": report.batch_size,
                   "workers": report.workers, "chunk_size": chunk_size, "dims": dims,
                   "max_pixels": max_pixels},
        "projection": proj_info,
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "counts": {"images": n, "skipped": len(skipped), "extracted_now": report.extracted,
                   "from_cache": n_known},
        "skipped": skipped,
        "inputs_signature": signature,
    }
    write_json_atomic(out / RUN_JSON, meta)
    _remove_stale(out, keep=data_dir.name)
    _summarise_skipped(skipped)
    log.info("built %d images in %.1f s", n, timings["total"])
    return load(out)


def _softmax_into(bundle: ModelBundle, features: np.ndarray, probs: np.ndarray,
                  block: int = 4096) -> None:
    """Predictions of the current head from the stored features, block by block."""
    for start in range(0, len(features), block):
        logits = bundle.logits_from_features(features[start : start + block])
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        probs[start : start + block] = e / e.sum(axis=1, keepdims=True)


def _key(*parts: object) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(repr(part).encode())
    return h.hexdigest()[:20]


def _neighbors_cached(folder: Path, model_fp: str, digests: list[str],
                      features: np.ndarray, progress: bool) -> NeighborTable:
    path = folder / f"{_key(model_fp, DEFAULT_K, digests)}.npz"
    if path.exists():
        with np.load(path) as z:
            return NeighborTable(z["index"], z["similarity"])
    log.info("neighbours: %d nearest of each of %d images (cosine, full features)",
             DEFAULT_K, len(digests))
    table = exact_knn(features, DEFAULT_K, progress=progress)

    def _write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, index=table.index, similarity=table.similarity)

    write_atomic(path, _write)
    return table


def _project_cached(
    folder: Path, model_fp: str, digests: list[str], features: np.ndarray, config: UMAPConfig,
    reproject: bool,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Reuse the projection of identical features; place a few new images into the previous
    map (keeping its layout); otherwise fit a fresh projection."""
    cfg_key = _key(model_fp, sorted(config.to_dict().items()))
    exact = folder / f"{_key(cfg_key, digests)}.npy"
    latest = folder / f"latest-{cfg_key}.npz"
    if exact.exists() and not reproject:
        log.info("projection: unchanged features and parameters, reused")
        return np.load(exact), {"method": "reused from cache", **config.to_dict()}
    if latest.exists() and not reproject:
        prev = np.load(latest)
        pos = {d: i for i, d in enumerate(prev["digests"].tolist())}
        old_rows = [i for i, d in enumerate(digests) if d in pos]
        n_new = len(digests) - len(old_rows)
        if 0 < n_new <= INCREMENTAL_MAX_NEW * len(digests) and len(old_rows) > config.n_neighbors:
            coords = np.zeros((len(digests), config.n_components), np.float32)
            coords[old_rows] = prev["coords"][[pos[digests[i]] for i in old_rows]]
            new_rows = sorted(set(range(len(digests))) - set(old_rows))
            coords[new_rows] = place_new_points(features[old_rows], coords[old_rows],
                                                features[new_rows], config.n_neighbors)
            log.info("projection: placed %d new images among their nearest neighbours in the "
                     "existing map (pass --reproject for a fresh layout)", n_new)
            info = {"method": f"incremental: {n_new} new images placed by their "
                    f"{config.n_neighbors} nearest neighbours", **config.to_dict()}
            return coords, info
    log.info("projection: %d points, PCA to %d then UMAP (n_neighbors=%d, min_dist=%g, %s, "
             "seed %d)...", len(digests), config.pca_dims, config.n_neighbors, config.min_dist,
             config.metric, config.seed)
    fault_point("projection")
    proj = project(features, config)
    log.info("projection: %s in %.1f s%s", proj.info["method"], proj.info["seconds"],
             f" ({proj.info['note']})" if "note" in proj.info else "")
    write_atomic(exact, lambda tmp: save_npy(tmp, proj.coords))

    def _write_latest(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, digests=np.asarray(digests, dtype="U32"), coords=proj.coords)

    write_atomic(latest, _write_latest)
    return proj.coords, proj.info


def _make_table(ds: Dataset, keep: list[int], digests: list[str], probs: np.ndarray,
                sizes: np.ndarray, xy: np.ndarray, bundle: ModelBundle) -> pd.DataFrame:
    names = np.asarray(bundle.class_names, dtype=object)
    recs = [ds.records[i] for i in keep]
    pred_index = np.asarray(probs.argmax(axis=1), dtype=np.int64)
    confidence = probs[np.arange(len(recs)), pred_index].astype(np.float32)
    k = min(TOP_K, probs.shape[1])
    top = np.argsort(-np.asarray(probs), axis=1)[:, :k]
    name_to_idx = {c: i for i, c in enumerate(bundle.class_names)}
    label_index = np.array([name_to_idx.get(r.label, -1) if r.label is not None else -1
                            for r in recs], dtype=np.int64)
    correct = [
        (bool(li == pi) if li >= 0 else None) for li, pi in zip(label_index, pred_index, strict=True)
    ]
    table = pd.DataFrame({
        "id": np.arange(len(recs), dtype=np.int64),
        "path": [str(r.path) for r in recs],
        "relpath": [r.relpath for r in recs],
        "name": [r.path.name for r in recs],
        "label": pd.array([r.label for r in recs], dtype="string"),
        "label_index": label_index,
        "pred": names[pred_index].astype(str),
        "pred_index": pred_index,
        "confidence": confidence,
        "correct": pd.array(correct, dtype="boolean"),
        "x": xy[:, 0].astype(np.float32),
        "y": xy[:, 1].astype(np.float32),
        "top5_labels": [list(names[row].astype(str)) for row in top],
        "top5_probs": [probs[i, row].astype(np.float32).tolist() for i, row in enumerate(top)],
        "width": sizes[:, 0],
        "height": sizes[:, 1],
        "hash": digests,
        "split": pd.array([r.split for r in recs], dtype="string"),
    })
    for col in ds.extra_columns:
        if col not in table.columns:
            table[col] = [r.extra.get(col) for r in recs]
    return table


def _summarise_skipped(skipped: list[dict[str, str]]) -> None:
    if not skipped:
        return
    log.warning("skipped %d file%s:", len(skipped), "s" if len(skipped) > 1 else "")
    for s in skipped[:50]:
        log.warning("  %s: %s", s["path"], s["reason"])
    if len(skipped) > 50:
        log.warning("  ... and %d more (all listed in run.json)", len(skipped) - 50)
