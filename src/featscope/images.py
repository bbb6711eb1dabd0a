"""Read any supported image file as an RGB PIL image, or say in one line why not."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageLoadError

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
DICOM_EXTS = frozenset({".dcm", ".dicom"})
SUPPORTED_EXTS = IMAGE_EXTS | DICOM_EXTS
DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's hard decompression-bomb limit (2x MAX_IMAGE_PIXELS)

# featscope applies its own size guard before decoding (below), with a clear message.
Image.MAX_IMAGE_PIXELS = None

_HIGH_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}
_EXIF_SWAPS = {5, 6, 7, 8}  # orientations that swap width and height


def is_supported(path: str | Path) -> bool:
    return Path(path).suffix.lower() in SUPPORTED_EXTS


def load_image(path: str | Path, max_pixels: int | None = None) -> Image.Image:
    """The full image as RGB, EXIF orientation applied."""
    return open_image(path, max_pixels=max_pixels)[0]


def open_image(
    path: str | Path,
    *,
    draft_min_side: int | None = None,
    max_pixels: int | None = None,
) -> tuple[Image.Image, tuple[int, int]]:
    """Read ``path`` as RGB and return it with its original (width, height).

    ``draft_min_side`` lets JPEGs decode at a reduced scale whose shorter side stays at
    least that long (much faster for large photos feeding a 224-px model).
    Raises ``ImageLoadError`` with a short reason for anything unreadable.
    """
    path = Path(path)
    limit = max_pixels or DEFAULT_MAX_PIXELS
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageLoadError(os_error_reason(exc)) from exc
    if size == 0:
        raise ImageLoadError("empty file (0 bytes)")
    if path.suffix.lower() in DICOM_EXTS:
        img = _read_dicom(path)
        return img, img.size
    try:
        img = Image.open(path)
    except UnidentifiedImageError as exc:
        raise ImageLoadError("not an image (unrecognised file format)") from exc
    except OSError as exc:
        raise ImageLoadError(os_error_reason(exc)) from exc
    try:
        w, h = img.size
        if w * h > limit:
            raise ImageLoadError(
                f"image too large ({w}x{h} = {w * h / 1e6:.0f} megapixels, limit "
                f"{limit / 1e6:.0f}; a decompression-bomb guard): raise it with --max-pixels"
            )
        if w < 1 or h < 1:
            raise ImageLoadError(f"image has no pixels ({w}x{h})")
        orientation = _orientation(img)
        orig = (h, w) if orientation in _EXIF_SWAPS else (w, h)
        if draft_min_side and img.format == "JPEG":
            img.draft("RGB", (draft_min_side, draft_min_side))
        img.load()
        if orientation and orientation != 1:
            img = ImageOps.exif_transpose(img)
        rgb = to_rgb(img)
    except ImageLoadError:
        img.close()
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        img.close()
        raise ImageLoadError(f"truncated or corrupt image ({_short(exc)})") from exc
    if rgb is not img:
        img.close()
    return rgb, orig


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB: 16-bit/float rescaled, alpha composited on white."""
    if img.mode == "RGB":
        return img
    if img.mode in _HIGH_BIT_MODES:
        arr = np.asarray(img, dtype=np.float32)
        return Image.fromarray(_to_uint8(arr)).convert("RGB")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.mode == "P" and "transparency" in img.info
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Stretch the image's own value range to 0-255 (12/16-bit scans rarely use the full range)."""
    arr = np.nan_to_num(arr.astype(np.float32))
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    return np.clip((arr - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8)


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block should not reject the image
        return 1


def _read_dicom(path: Path) -> Image.Image:
    try:
        import pydicom
    except ImportError as exc:
        raise ImageLoadError(
            "DICOM support needs pydicom: pip install 'featscope[dicom]'"
        ) from exc
    try:
        ds = pydicom.dcmread(str(path))
        arr = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds for broken files
        raise ImageLoadError(f"not a readable DICOM file ({_short(exc)})") from exc
    try:
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError:  # pydicom < 3
        from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    if frames > 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[-1] == 3:
        return Image.fromarray(_to_uint8(arr) if arr.dtype != np.uint8 else arr, "RGB")
    try:
        arr = apply_voi_lut(apply_modality_lut(arr, ds), ds)
    except Exception:  # noqa: BLE001 - windowing is a refinement; raw values still show the image
        pass
    out = _to_uint8(np.asarray(arr, dtype=np.float32))
    if photometric == "MONOCHROME1":  # 0 means white in MONOCHROME1
        out = 255 - out
    return Image.fromarray(out, "L").convert("RGB")


def os_error_reason(exc: OSError) -> str:
    """A short, user-facing reason for a failed file access."""
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if exc.errno == errno.EISDIR:
        return "is a directory"
    return exc.strerror or _short(exc)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]
