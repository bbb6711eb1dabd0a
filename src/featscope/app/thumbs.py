"""Images for the browser: thumbnails cached in the run directory, display-sized originals.

Thumbnails are keyed by the image's content hash (``RUN/thumbs/<hash>.jpg``), made once,
written atomically (a reader never sees half a JPEG; two threads making the same thumbnail
both write whole files and the last rename wins).
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from ..atomic import write_bytes_atomic

log = logging.getLogger(__name__)

THUMB_SIZE = 128
DISPLAY_MAX_SIDE = 1600  # what the detail panel needs; larger originals are resized
BROWSER_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif",
                   "WEBP": "image/webp"}
_SAFE_NAME = re.compile(r"[0-9A-Za-z_-]{1,128}")


def load_image(path: str | Path) -> Image.Image:
    """The image as RGB with EXIF orientation applied (featscope.images does the hard cases:
    16-bit, CMYK, palette, DICOM)."""
    from ..images import load_image as _load

    return _load(path)


def load_reduced(path: str | Path, min_side: int) -> Image.Image:
    """Like ``load_image``, but a JPEG may decode at a reduced scale (shorter side still at
    least ``min_side``): a 24-megapixel photo becomes a thumbnail in milliseconds."""
    from ..images import open_image

    return open_image(path, draft_min_side=min_side)[0]


def cache_name(content_hash: str | None, fallback: str) -> str:
    """A file name from the table's hash that can never leave the thumbs folder."""
    text = str(content_hash) if content_hash else fallback
    if _SAFE_NAME.fullmatch(text):
        return text
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def encode_jpeg(img: Image.Image, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def make_thumbnail(img: Image.Image, size: int = THUMB_SIZE) -> bytes:
    img = img.copy()
    img.thumbnail((size, size), Image.LANCZOS)
    return encode_jpeg(img, quality=85)


class ThumbCache:
    """``RUN/thumbs/<hash>.jpg``, at most ``size`` px, made on first request."""

    def __init__(
        self,
        run_dir: Path,
        size: int = THUMB_SIZE,
        loader: Callable[[Path], Image.Image] | None = None,
    ):
        self.dir = Path(run_dir) / "thumbs"
        self.size = size
        self.loader = loader or (lambda p: load_reduced(p, size))
        self._warned = False

    def path_for(self, content_hash: str | None, fallback: str) -> Path:
        return self.dir / f"{cache_name(content_hash, fallback)}.jpg"

    def get(self, image_path: Path, content_hash: str | None) -> bytes:
        target = self.path_for(content_hash, str(image_path))
        try:
            return target.read_bytes()
        except FileNotFoundError:
            pass
        data = make_thumbnail(self.loader(image_path), self.size)
        try:
            write_bytes_atomic(target, data)
        except OSError as exc:  # a read-only run still serves thumbnails, just uncached
            if not self._warned:
                log.warning("cannot cache thumbnails in %s (%s)", self.dir, exc)
                self._warned = True
        return data

    def display(self, image_path: Path, content_hash: str | None) -> tuple[bytes | Path, str]:
        """The original for the detail panel: the file itself when a browser can show it and
        it is not huge, else a cached JPEG at most ``DISPLAY_MAX_SIDE`` px (TIFF, DICOM,
        16-bit, very large photos)."""
        try:
            with Image.open(image_path) as im:
                fmt, (w, h) = im.format, im.size
        except Exception:  # noqa: BLE001 - DICOM and friends: convert below
            fmt, w, h = None, 0, 0
        if fmt in BROWSER_FORMATS and max(w, h) <= DISPLAY_MAX_SIDE * 2:
            return Path(image_path), BROWSER_FORMATS[fmt]
        target = self.dir / f"{cache_name(content_hash, str(image_path))}_display.jpg"
        try:
            return target.read_bytes(), "image/jpeg"
        except FileNotFoundError:
            pass
        img = load_reduced(image_path, DISPLAY_MAX_SIDE // 2)
        img.thumbnail((DISPLAY_MAX_SIDE, DISPLAY_MAX_SIDE), Image.LANCZOS)
        data = encode_jpeg(img, quality=90)
        try:
            write_bytes_atomic(target, data)
        except OSError:
            pass
        return data, "image/jpeg"
