"""Find the images of a dataset: class folders, a flat folder, or a CSV/Parquet manifest."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import FeatscopeError
from .images import is_supported

log = logging.getLogger(__name__)

MANIFEST_EXTS = {".csv", ".parquet", ".pq"}
_RESERVED = {"id", "path", "label", "split"}


@dataclass
class ImageRecord:
    path: Path  # absolute
    relpath: str  # relative to the dataset root, for display
    label: str | None = None
    split: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Dataset:
    root: Path
    kind: str  # "class folders" | "flat folder" | "manifest"
    records: list[ImageRecord]
    class_names: list[str]
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    extra_columns: list[str] = field(default_factory=list)

    @property
    def labelled(self) -> bool:
        return any(r.label is not None for r in self.records)


def discover(data: str | Path) -> Dataset:
    """Describe the dataset at ``data``; raises FeatscopeError for a missing or empty source."""
    path = Path(data).expanduser()
    if not path.exists():
        raise FeatscopeError(f"{path}: no such file or folder")
    path = path.resolve()
    if path.is_file():
        if path.suffix.lower() not in MANIFEST_EXTS:
            raise FeatscopeError(
                f"{path}: not a folder or a manifest (.csv, .parquet with a 'path' column)"
            )
        ds = _from_manifest(path)
    else:
        ds = _from_folder(path)
    if not ds.records:
        detail = f" ({len(ds.problems)} unusable entries)" if ds.problems else ""
        raise FeatscopeError(f"{path}: no images found{detail}")
    return ds


def _walk_images(root: Path, problems: list[tuple[str, str]]) -> list[Path]:
    """All supported image files below ``root``, following directory links without looping."""
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()

    def onerror(err: OSError) -> None:
        problems.append((str(err.filename), f"cannot list folder ({err.strerror})"))

    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=onerror):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:  # a symlink back into an ancestor: do not descend again
            problems.append((dirpath, "symbolic link loop (folder already visited)"))
            dirnames[:] = []
            continue
        seen.add(key)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or not is_supported(name):
                continue
            found.append(Path(dirpath) / name)
    return found


def _from_folder(root: Path) -> Dataset:
    problems: list[tuple[str, str]] = []
    top_images = [p for p in root.iterdir() if p.is_file() and is_supported(p.name)]
    subdirs = sorted(
        p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    if subdirs and not top_images:
        records: list[ImageRecord] = []
        classes: list[str] = []
        for sub in subdirs:
            files = _walk_images(sub, problems)
            classes.append(sub.name)
            if not files:
                log.warning("class folder %s has no images", sub)
            for f in files:
                records.append(ImageRecord(f, str(f.relative_to(root)), label=sub.name))
        return Dataset(root, "class folders", records, classes, problems)
    files = _walk_images(root, problems)
    records = [ImageRecord(f, str(f.relative_to(root))) for f in files]
    return Dataset(root, "flat folder", records, [], problems)


def _from_manifest(path: Path) -> Dataset:
    try:
        if path.suffix.lower() == ".csv":
            df = pd.read_csv(path, dtype={"path": str, "label": str, "split": str})
        else:
            df = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pandas raises many kinds for a bad file
        raise FeatscopeError(f"{path}: cannot read manifest ({exc})") from exc
    if "path" not in df.columns:
        raise FeatscopeError(
            f"{path}: manifest has no 'path' column (columns: {', '.join(map(str, df.columns))})"
        )
    root = path.parent
    extra_cols = [c for c in df.columns if c not in _RESERVED]
    problems: list[tuple[str, str]] = []
    records: list[ImageRecord] = []
    seen: dict[Path, int] = {}
    for row_no, row in enumerate(df.to_dict("records"), start=2):  # row 1 is the header
        raw = row.get("path")
        if not isinstance(raw, str) or not raw.strip():
            problems.append((f"{path.name} row {row_no}", "empty path"))
            continue
        p = Path(raw)
        if not p.is_absolute():
            p = (root / p).resolve()
            if not p.is_relative_to(root):
                problems.append((raw, "relative path leaves the manifest's folder "
                                 "(write it as an absolute path if intended)"))
                continue
        if p in seen:
            problems.append((raw, f"duplicate path in manifest (first at row {seen[p]})"))
            continue
        seen[p] = row_no
        if not p.exists():
            problems.append((raw, "file not found (listed in manifest)"))
            continue
        label = _clean(row.get("label"))
        split = _clean(row.get("split"))
        rel = str(p.relative_to(root)) if p.is_relative_to(root) else str(p)
        extra = {c: row.get(c) for c in extra_cols}
        records.append(ImageRecord(p, rel, label=label, split=split, extra=extra))
    classes = sorted({r.label for r in records if r.label is not None})
    return Dataset(root, "manifest", records, classes, problems, extra_cols)


def _clean(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = str(value).strip()
    return text or None
