"""Content-addressed store of extracted features, written in chunks.

Features and predictions are keyed by the image's content hash inside a folder named by the
model fingerprint (model, weights, feature layer, preprocessing). Each chunk is a folder
renamed into place when complete, so a killed build loses at most the chunk in progress and
a rerun resumes from the rest. Independent writers (e.g. distributed workers) can add chunks
side by side without coordination.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import save_npy, write_atomic

log = logging.getLogger(__name__)

HASH_INDEX = "hashes.parquet"


def content_hash(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class HashIndex:
    """Remembers (path, size, mtime) -> content hash so unchanged files are not re-read."""

    def __init__(self, cache_dir: Path):
        self.path = Path(cache_dir) / HASH_INDEX
        self._known: dict[str, tuple[int, int, str]] = {}
        if self.path.exists():
            try:
                df = pd.read_parquet(self.path)
                self._known = {
                    p: (int(s), int(m), h)
                    for p, s, m, h in zip(df["path"], df["size"], df["mtime_ns"], df["hash"], strict=True)
                }
            except Exception:  # noqa: BLE001 - a damaged index only costs re-hashing
                log.warning("hash index %s unreadable; re-hashing files", self.path)
        self._seen: dict[str, tuple[int, int, str]] = {}

    def hash(self, path: Path) -> str:
        st = os.stat(path)
        key = str(path)
        known = self._known.get(key)
        if known and known[0] == st.st_size and known[1] == st.st_mtime_ns:
            digest = known[2]
        else:
            digest = content_hash(path)
        self._seen[key] = (st.st_size, st.st_mtime_ns, digest)
        return digest

    def save(self) -> None:
        merged = {**self._known, **self._seen}
        df = pd.DataFrame(
            {
                "path": list(merged),
                "size": [v[0] for v in merged.values()],
                "mtime_ns": [v[1] for v in merged.values()],
                "hash": [v[2] for v in merged.values()],
            }
        )
        write_atomic(self.path, lambda tmp: df.to_parquet(tmp, index=False))


@dataclass
class ChunkRows:
    """Where one cached image lives: chunk number and row within it."""

    chunk: int
    row: int


class FeatureStore:
    """Chunks of (hash, features, probs, size) for one model fingerprint."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._chunks: list[dict[str, np.ndarray]] = []
        self.index: dict[str, ChunkRows] = {}
        self._clean_partial()
        for d in sorted(self.root.glob("chunk-*")):
            self._open_chunk(d)

    def _clean_partial(self) -> None:
        for d in self.root.glob(".tmp-chunk-*"):  # left by a killed build
            shutil.rmtree(d, ignore_errors=True)

    def _open_chunk(self, d: Path) -> None:
        try:
            chunk = {
                name: np.load(d / f"{name}.npy", mmap_mode="r")
                for name in ("hashes", "features", "probs", "sizes")
            }
        except (OSError, ValueError, EOFError):
            log.warning("ignoring damaged cache chunk %s", d)
            return
        n = len(self._chunks)
        self._chunks.append(chunk)
        for row, h in enumerate(chunk["hashes"]):
            self.index.setdefault(str(h), ChunkRows(n, row))

    def __contains__(self, digest: str) -> bool:
        return digest in self.index

    def __len__(self) -> int:
        return len(self.index)

    @property
    def feature_dim(self) -> int | None:
        return int(self._chunks[0]["features"].shape[1]) if self._chunks else None

    def write_chunk(
        self, hashes: list[str], features: np.ndarray, probs: np.ndarray, sizes: np.ndarray
    ) -> Path:
        """Write one complete chunk atomically (folder rename) and index it."""
        name = f"chunk-{uuid.uuid4().hex[:12]}"
        tmp = self.root / f".tmp-{name}"
        tmp.mkdir()
        arrays = {
            "hashes": np.asarray(hashes, dtype="U32"),
            "features": np.ascontiguousarray(features, dtype=np.float32),
            "probs": np.ascontiguousarray(probs, dtype=np.float32),
            "sizes": np.asarray(sizes, dtype=np.int32).reshape(-1, 2),
        }
        for key, arr in arrays.items():
            write_atomic(tmp / f"{key}.npy", lambda t, a=arr: save_npy(t, a))
        final = self.root / name
        os.replace(tmp, final)
        self._open_chunk(final)
        return final

    def gather(self, digests: list[str], out_features: np.ndarray, out_probs: np.ndarray | None,
               out_sizes: np.ndarray) -> None:
        """Copy the rows of ``digests`` (in order) into the output arrays, chunk by chunk
        (``out_probs`` None: the caller recomputes predictions from the features)."""
        by_chunk: dict[int, list[tuple[int, int]]] = {}
        for i, d in enumerate(digests):
            loc = self.index[d]
            by_chunk.setdefault(loc.chunk, []).append((i, loc.row))
        for c, pairs in by_chunk.items():
            dst = np.fromiter((p[0] for p in pairs), dtype=np.int64, count=len(pairs))
            src = np.fromiter((p[1] for p in pairs), dtype=np.int64, count=len(pairs))
            chunk = self._chunks[c]
            out_features[dst] = chunk["features"][src]
            if out_probs is not None:
                out_probs[dst] = chunk["probs"][src]
            out_sizes[dst] = chunk["sizes"][src]
