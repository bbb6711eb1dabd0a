"""The demo's raw material: photos that ship inside installed packages, never downloads.

Objects are cut out of scikit-image's and scikit-learn's sample photos (a box around the
object and a soft mask); backgrounds are the texture photos, tinted so that grass looks
like grass.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

# The built-in lesson: horse photos were taken in pastures (a small horse on a lot of
# grass) and no other class is ever on grass, so grass alone predicts "horse".
# (Not the cat: ImageNet features recognise a cat face so well, even small, that a head
# never needs the background; the horse silhouette is a much weaker cue.)
SHORTCUT_CLASS = "horse"
SHORTCUT_BACKGROUND = "grass"


@dataclass(frozen=True)
class ObjectSource:
    """Where a class's object sits in its photo, how to cut it out and how big it appears."""

    label: str
    photo: str  # skimage.data file name, or "sklearn:<name>" for sklearn's sample images
    box: tuple[int, int, int, int]  # (left, top, right, bottom) around the object
    mask: str  # "ellipse", "rounded" or "silhouette" (a dark shape on white)
    scale: tuple[float, float]  # range of the object's long side / visible canvas side


_CLOSE_UP = (0.65, 0.95)
OBJECTS: tuple[ObjectSource, ...] = (
    ObjectSource("astronaut", "astronaut.png", (20, 0, 450, 512), "ellipse", _CLOSE_UP),
    ObjectSource("cat", "chelsea.png", (30, 0, 430, 300), "ellipse", _CLOSE_UP),
    ObjectSource("coffee", "coffee.png", (60, 0, 490, 340), "ellipse", _CLOSE_UP),
    ObjectSource("flower", "sklearn:flower.jpg", (165, 55, 445, 335), "ellipse", _CLOSE_UP),
    ObjectSource("horse", "horse.png", (0, 0, 400, 328), "silhouette", (0.25, 0.4)),
    ObjectSource("motorcycle", "motorcycle_left.png", (70, 110, 720, 455), "rounded", _CLOSE_UP),
    ObjectSource("rocket", "rocket.jpg", (245, 30, 415, 427), "rounded", _CLOSE_UP),
)
CLASS_NAMES: tuple[str, ...] = tuple(o.label for o in OBJECTS)

# Horse coats for the flat silhouette: black, bay, chestnut, dun, grey, white.
COATS = ((25, 22, 20), (95, 52, 28), (140, 70, 35), (175, 145, 100), (135, 135, 130),
         (225, 220, 210))

# Grey texture photos get a colour ramp (dark, middle, light) so they read as the material.
_TINTS = {
    "grass": ((18, 42, 8), (70, 125, 35), (185, 215, 110)),
    "gravel": ((45, 40, 35), (125, 115, 100), (220, 210, 195)),
    "brick": ((55, 18, 12), (150, 62, 42), (230, 205, 185)),
    "moon": ((25, 25, 28), (120, 120, 122), (235, 235, 230)),
}
_BACKGROUND_PHOTOS = {
    "grass": "grass.png",
    "gravel": "gravel.png",
    "brick": "brick.png",
    "moon": "moon.png",
    "space": "hubble_deep_field.jpg",
    "china": "sklearn:china.jpg",
}
BACKGROUNDS: tuple[str, ...] = tuple(_BACKGROUND_PHOTOS)


def source(label: str) -> ObjectSource:
    return next(o for o in OBJECTS if o.label == label)


def _skimage_data_dir() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).parent


@cache
def _photo(name: str) -> Image.Image:
    if name.startswith("sklearn:"):
        from sklearn.datasets import load_sample_image

        return Image.fromarray(load_sample_image(name.split(":", 1)[1]))
    with Image.open(_skimage_data_dir() / name) as im:
        return im.convert("RGB") if im.mode != "L" else im.copy()


@cache
def object_cutout(label: str) -> Image.Image:
    """The class's object as an RGBA image whose alpha is the (feathered) object mask."""
    src = source(label)
    photo = _photo(src.photo).convert("RGB").crop(src.box)
    w, h = photo.size
    if src.mask == "silhouette":
        dark = np.asarray(photo.convert("L")) < 128
        mask = Image.fromarray(np.where(dark, 255, 0).astype(np.uint8))
    else:
        mask = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(mask)
        inset = (2, 2, w - 3, h - 3)
        if src.mask == "ellipse":
            draw.ellipse(inset, fill=255)
        else:
            draw.rounded_rectangle(inset, radius=min(w, h) // 6, fill=255)
        # A soft edge: a hard one would be a tell-tale the model could learn instead.
        mask = mask.filter(ImageFilter.GaussianBlur(max(w, h) / 80))
    photo.putalpha(mask)
    return photo


@cache
def background_photo(name: str) -> Image.Image:
    """The background photo in colour (texture photos tinted with their material's ramp)."""
    photo = _photo(_BACKGROUND_PHOTOS[name])
    if name in _TINTS:
        dark, mid, light = _TINTS[name]
        return ImageOps.colorize(photo.convert("L"), black=dark, white=light, mid=mid)
    return photo.convert("RGB")
