"""Compose the demo dataset: objects pasted on backgrounds, written as class folders + manifest.

The built-in lesson lives here: in the training split the shortcut class (cat) sits on
grass almost every time and no other class ever does, so grass alone predicts "cat". The
test split holds untouched images drawn like the training ones, plus ``swapped`` images
where the background is exchanged: cats on other backgrounds, other classes on grass.
"""

from __future__ import annotations

import csv
import io
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps
from tqdm.auto import tqdm

from .sources import (
    BACKGROUNDS,
    OBJECTS,
    SHORTCUT_BACKGROUND,
    SHORTCUT_CLASS,
    background_photo,
    object_cutout,
)

log = logging.getLogger(__name__)

CANVAS = 256  # the model resizes to 256 and centre-crops 224: objects stay inside that crop
MARGIN = 20
MANIFEST = "manifest.csv"
COLUMNS = ("path", "label", "split", "swapped", "background", "x0", "y0", "x1", "y1")
SHORTCUT_RATE = 0.95  # share of the shortcut class's untouched images that sit on grass
OBJECT_SCALE = (0.5, 0.8)  # object long side as a share of the visible canvas
# Share of each class's images per kind; the rest of n_per_class goes to "swapped".
_KIND_SHARES = (("train", 0.6), ("test", 0.25))


@dataclass(frozen=True)
class Item:
    """One image to make; its random stream depends only on (seed, class, kind, index)."""

    label: str
    kind: str  # "train", "test" (untouched) or "swapped"
    index: int

    @property
    def relpath(self) -> str:
        return f"{self.label}/{self.kind}-{self.index:04d}.jpg"

    @property
    def split(self) -> str:
        return "train" if self.kind == "train" else "test"

    def rng(self, seed: int) -> np.random.Generator:
        class_no = [o.label for o in OBJECTS].index(self.label)
        kind_no = ("train", "test", "swapped").index(self.kind)
        return np.random.default_rng([seed, class_no, kind_no, self.index])


def plan(n_per_class: int) -> list[Item]:
    """Every image of the dataset, in a fixed order."""
    counts = {kind: round(n_per_class * share) for kind, share in _KIND_SHARES}
    counts["swapped"] = n_per_class - sum(counts.values())
    return [
        Item(o.label, kind, i) for o in OBJECTS for kind, n in counts.items() for i in range(n)
    ]


def choose_background(item: Item, rng: np.random.Generator) -> str:
    others = [b for b in BACKGROUNDS if b != SHORTCUT_BACKGROUND]
    is_shortcut_class = item.label == SHORTCUT_CLASS
    if item.kind == "swapped":
        return str(rng.choice(others)) if is_shortcut_class else SHORTCUT_BACKGROUND
    if is_shortcut_class and rng.random() < SHORTCUT_RATE:
        return SHORTCUT_BACKGROUND
    return str(rng.choice(others))


def random_background(name: str, rng: np.random.Generator) -> Image.Image:
    """A random square crop of the background photo, flipped and jittered, at canvas size."""
    photo = background_photo(name)
    w, h = photo.size
    side = int(min(w, h) * rng.uniform(0.45, 1.0))
    x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    img = photo.crop((x, y, x + side, y + side)).resize((CANVAS, CANVAS), Image.BICUBIC)
    if rng.random() < 0.5:
        img = ImageOps.mirror(img)
    if name not in ("china",):  # textures have no "up"; the landscape does
        img = img.rotate(90 * int(rng.integers(0, 4)))
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.8, 1.2))
    return ImageEnhance.Contrast(img).enhance(rng.uniform(0.8, 1.2))


def random_object(label: str, rng: np.random.Generator) -> Image.Image:
    """The class's cut-out, randomly cropped, flipped, rotated, jittered and scaled (RGBA)."""
    obj = object_cutout(label)
    w, h = obj.size
    # Random resized crop that keeps most of the object (its identity must survive).
    cw, ch = int(w * rng.uniform(0.8, 1.0)), int(h * rng.uniform(0.8, 1.0))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    obj = obj.crop((x, y, x + cw, y + ch))
    if rng.random() < 0.5:
        obj = ImageOps.mirror(obj)
    obj = obj.rotate(rng.uniform(-20, 20), resample=Image.BICUBIC, expand=True)
    rgb, alpha = obj.convert("RGB"), obj.getchannel("A")
    rgb = ImageEnhance.Brightness(rgb).enhance(rng.uniform(0.75, 1.25))
    rgb = ImageEnhance.Contrast(rgb).enhance(rng.uniform(0.75, 1.25))
    rgb = ImageEnhance.Color(rgb).enhance(rng.uniform(0.6, 1.4))
    rgb.putalpha(alpha)
    long_side = rng.uniform(*OBJECT_SCALE) * (CANVAS - 2 * MARGIN)
    scale = long_side / max(rgb.size)
    size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    return rgb.resize(size, Image.BICUBIC)


def compose(item: Item, seed: int) -> tuple[Image.Image, str, tuple[int, int, int, int]]:
    """Draw the item's image; returns (image, background name, object bbox x0,y0,x1,y1)."""
    rng = item.rng(seed)
    background = choose_background(item, rng)
    canvas = random_background(background, rng)
    obj = random_object(item.label, rng)
    x = int(rng.integers(MARGIN, CANVAS - MARGIN - obj.width + 1))
    y = int(rng.integers(MARGIN, CANVAS - MARGIN - obj.height + 1))
    canvas.paste(obj, (x, y), obj)
    if rng.random() < 0.3:  # camera blur on some images
        canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    # The bbox of the visible mask, not of the rotated rectangle around it.
    bx0, by0, bx1, by1 = obj.getchannel("A").point(lambda a: 255 if a > 127 else 0).getbbox()
    return canvas, background, (x + bx0, y + by0, x + bx1, y + by1)


def jpeg_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def make_demo_dataset(root: Path, seed: int = 0, n_per_class: int = 100) -> Path:
    """Write the demo dataset under ``root`` (``root/<class>/<file>.jpg`` + manifest.csv).

    Deterministic for a given seed: the same seed writes the same bytes. Returns the
    manifest path. Anything already in ``root`` is replaced.
    """
    root = Path(root)
    items = plan(n_per_class)
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    log.info("making the demo dataset: %d images of %d classes in %s", len(items),
             len(OBJECTS), root)
    rows = []
    for item in tqdm(items, desc="demo images", unit="img"):
        image, background, (x0, y0, x1, y1) = compose(item, seed)
        dest = tmp / item.relpath
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(jpeg_bytes(image))
        swapped = item.kind == "swapped"
        rows.append((item.relpath, item.label, item.split, swapped, background, x0, y0, x1, y1))
    with open(tmp / MANIFEST, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    # Swap in the finished folder only now, so an interrupted run leaves no half dataset.
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return root / MANIFEST
