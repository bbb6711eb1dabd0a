"""Model input preprocessing (resize, centre crop, normalise) and its inverse geometry.

The same ``Preprocess`` turns a PIL image into the model's input tensor at build time and at
click time, and maps a heatmap computed on that input back onto the original image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image

_RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


@dataclass(frozen=True)
class Preprocess:
    """Resize the shorter side to ``resize``, centre-crop ``crop``, scale to [0,1], normalise."""

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Preprocess:
        return cls(
            resize=int(d["resize"]),
            crop=int(d["crop"]),
            mean=tuple(float(v) for v in d["mean"]),
            std=tuple(float(v) for v in d["std"]),
            interpolation=d.get("interpolation", "bilinear"),
        )

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """Size after resizing the shorter side to ``resize`` (torchvision's rounding)."""
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.resize, int(self.resize * long / short)
        return (new_short, new_long) if width <= height else (new_long, new_short)

    def crop_box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the centre crop in resized coordinates."""
        rw, rh = self.resized_size(width, height)
        left = int(round((rw - self.crop) / 2.0))
        top = int(round((rh - self.crop) / 2.0))
        return left, top, left + self.crop, top + self.crop

    def to_uint8(self, image: Image.Image) -> np.ndarray:
        """RGB PIL image -> resized, centre-cropped uint8 HWC array (not yet normalised)."""
        w, h = image.size
        rw, rh = self.resized_size(w, h)
        left, top, right, bottom = self.crop_box(w, h)
        if left < 0 or top < 0:  # image smaller than the crop after resize: pad like torchvision
            img = _pad_to(image.resize((rw, rh), _RESAMPLE[self.interpolation]), self.crop)
            left, top = max(left, 0), max(top, 0)
            return np.asarray(img.crop((left, top, left + self.crop, top + self.crop)),
                              dtype=np.uint8)
        # Resample only the crop window (in original coordinates): the same pixels as
        # resizing the whole image and cropping, for a third less work.
        sx, sy = w / rw, h / rh
        box = (left * sx, top * sy, right * sx, bottom * sy)
        img = image.resize((self.crop, self.crop), _RESAMPLE[self.interpolation], box=box)
        return np.asarray(img, dtype=np.uint8)

    def normalize_batch(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 [B, H, W, 3] -> normalised float [B, 3, H, W] in channels_last memory format.

        Done in torch on whole batches (multi-threaded, and the HWC layout already is
        channels_last), rather than per image in the loader.
        """
        x = batch.permute(0, 3, 1, 2).float()
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
        return x.mul_(1.0 / 255.0).sub_(mean).div_(std)

    def to_array(self, image: Image.Image) -> np.ndarray:
        """RGB PIL image -> float32 CHW array, normalised (no batch dimension)."""
        x = self.normalize_batch(torch.from_numpy(self.to_uint8(image).copy())[None])
        return np.ascontiguousarray(x[0].numpy())

    def to_tensor(self, image: Image.Image) -> torch.Tensor:
        """RGB PIL image -> [1, 3, crop, crop] float tensor."""
        return torch.from_numpy(self.to_array(image))[None]

    def heatmap_to_original(self, heatmap: np.ndarray, width: int, height: int) -> np.ndarray:
        """Map a [crop, crop] heatmap on the model input back onto a ``height x width`` original.

        Undoes the centre crop (regions the model never saw become NaN) and the resize.
        """
        import cv2  # OpenCV comes with pytorch-grad-cam; its float resize is ~5x Pillow's

        heatmap = np.asarray(heatmap, dtype=np.float32)
        rw, rh = self.resized_size(width, height)
        left, top, _, _ = self.crop_box(width, height)
        canvas = np.zeros((rh, rw), dtype=np.float32)
        # Intersection of the crop window with the resized image.
        x0, y0 = max(left, 0), max(top, 0)
        x1, y1 = min(left + self.crop, rw), min(top + self.crop, rh)
        canvas[y0:y1, x0:x1] = heatmap[y0 - top : y1 - top, x0 - left : x1 - left]
        shrink = width < rw or height < rh
        out = cv2.resize(canvas, (width, height),
                         interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        # Pixels whose nearest resized pixel lies outside the crop were never seen.
        cols = np.floor((np.arange(width) + 0.5) * rw / width)
        rows = np.floor((np.arange(height) + 0.5) * rh / height)
        out[~((rows >= y0) & (rows < y1)), :] = np.nan
        out[:, ~((cols >= x0) & (cols < x1))] = np.nan
        return out

    def point_to_original(self, x: float, y: float, width: int, height: int) -> tuple[float, float]:
        """Map a point (pixel centre coordinates) on the model input to the original image."""
        rw, rh = self.resized_size(width, height)
        left, top, _, _ = self.crop_box(width, height)
        return (x + left) * width / rw, (y + top) * height / rh


def _pad_to(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    if w >= size and h >= size:
        return img
    canvas = Image.new("RGB", (max(w, size), max(h, size)))
    canvas.paste(img, ((canvas.width - w) // 2, (canvas.height - h) // 2))
    return canvas
