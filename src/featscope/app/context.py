"""What the app's routes and callbacks share: the run, derived arrays, caches, services."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import pandas as pd

from ..store import Run
from .camgallery import CamGalleries
from .cams import CamService
from .figures import MapData
from .jobs import JobRegistry
from .thumbs import ThumbCache


@dataclass(eq=False)
class AppContext:
    run: Run
    data: MapData
    thumbs: ThumbCache
    cams: CamService
    jobs: JobRegistry
    requested_device: str = "auto"
    # Dash's config: its requests_pathname_prefix can change late (Jupyter's proxy sets it
    # when the app starts), so URLs read it when they are made.
    app_config: Any = None
    version: str = field(default="")
    galleries: CamGalleries = field(default_factory=CamGalleries)  # CAM galleries by job

    def __post_init__(self) -> None:
        if not self.version:
            # Changes with every build: image URLs carry it, so browsers may cache them long.
            tag = f"{self.run.meta.get('build_id', '')}|{self.run.meta.get('data_dir', '')}"
            self.version = hashlib.sha256(tag.encode()).hexdigest()[:10]

    @property
    def device(self) -> str:
        """The model's device once it has loaded, else what was asked for ("auto")."""
        if self.cams.model.status == "ready":
            dev = getattr(getattr(self.cams.model.get(0), "bundle", None), "device", None)
            if dev is not None:
                return str(dev)
        return self.requested_device

    @property
    def cam(self) -> ModuleType:
        """featscope.cam (or a stand-in in unit tests); waits while it is being imported."""
        return self.cams.cam

    @property
    def table(self) -> pd.DataFrame:
        return self.run.table

    @property
    def n(self) -> int:
        return len(self.run.table)

    @property
    def class_names(self) -> list[str]:
        return self.run.class_names

    def image_path(self, image_id: int) -> Path:
        return self.run.image_path(image_id)

    def content_hash(self, image_id: int) -> str | None:
        if "hash" not in self.table:
            return None
        v = self.table["hash"].iat[image_id]
        return None if pd.isna(v) else str(v)

    @property
    def prefix(self) -> str:
        if self.app_config is None:
            return "/"
        return self.app_config.get("requests_pathname_prefix") or "/"

    def url(self, path: str) -> str:
        return self.prefix.rstrip("/") + path

    def image_url(self, image_id: int) -> str:
        return self.url(f"/image/{image_id}?v={self.version}")

    def thumb_url(self, image_id: int) -> str:
        return self.url(f"/thumb/{image_id}?v={self.version}")

    def cam_url(self, image_id: int, target: int, method: str, kind: str) -> str:
        # urlencode: "gradcam++" must not arrive as "gradcam  ".
        query = urlencode({"cls": target, "method": method, "kind": kind, "v": self.version})
        return self.url(f"/cam/{image_id}?{query}")
