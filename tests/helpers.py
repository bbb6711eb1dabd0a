"""Test datasets built from photos that ship inside scikit-image (never downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

# Debian's Chromium, driven by Playwright (its own browser download is not available here).
CHROMIUM = os.environ.get("FEATSCOPE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]

PHOTOS = ("chelsea", "coffee", "rocket", "astronaut", "camera")


def photo(name: str) -> Image.Image:
    from skimage import data

    return Image.fromarray(getattr(data, name)()).convert("RGB")


def random_crops(img: Image.Image, n: int, rng: np.random.Generator) -> list[Image.Image]:
    """Crops covering 55-100% of each side, some flipped: realistic variety, same subject."""
    out = []
    w, h = img.size
    for _ in range(n):
        s = rng.uniform(0.55, 1.0)
        cw, ch = int(w * s), int(h * s)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = img.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        out.append(crop)
    return out


def make_class_dataset(
    root: Path, classes: dict[str, str] | None = None, n: int = 8, seed: int = 0
) -> Path:
    """root/<class>/<i>.jpg with ``n`` random crops of one photo per class."""
    classes = classes or {"cat": "chelsea", "coffee": "coffee", "rocket": "rocket"}
    rng = np.random.default_rng(seed)
    for cls, name in classes.items():
        d = Path(root) / cls
        d.mkdir(parents=True, exist_ok=True)
        for i, crop in enumerate(random_crops(photo(name), n, rng)):
            crop.save(d / f"{cls}_{i:03d}.jpg", quality=90)
    return Path(root)


def save_head_checkpoint(run, path: Path, class_names: list[str], seed: int = 0) -> Path:
    """Fit a linear head on ``run``'s features for its labels and save a full
    efficientnet-lite0 checkpoint with it: what a user's fine-tuned model looks like."""
    import torch
    from sklearn.linear_model import LogisticRegression

    from featscope.models import ModelSpec, load_model

    labels = run.table["label"].to_numpy(dtype=object)
    y = np.array([class_names.index(str(v)) for v in labels])
    clf = LogisticRegression(max_iter=2000, C=10.0, random_state=seed)
    clf.fit(np.asarray(run.features), y)
    w, b = clf.coef_, clf.intercept_
    if len(class_names) == 2:  # sklearn keeps one row for binary problems
        w, b = np.vstack([-w, w]) / 2, np.array([-b[0], b[0]]) / 2
    state = load_model(ModelSpec("efficientnet-lite0")).model.state_dict()
    state["_fc.weight"] = torch.tensor(w, dtype=torch.float32)
    state["_fc.bias"] = torch.tensor(b, dtype=torch.float32)
    torch.save({"state_dict": state, "class_names": list(class_names)}, path)
    return path


def tiny_classifier(num_classes: int = 3, size: int = 64):
    """A small conv net with the torchvision layout (features, avgpool, fc): thousands of
    images/s on a CPU, for tests and benchmarks where the model's quality does not matter."""
    import torch
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 16, 4, stride=4), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU()
            )
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(32, num_classes)

        def forward(self, x):
            return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))

    torch.manual_seed(0)
    model = Tiny()
    model.featscope_preprocess = {"resize": size, "crop": size}
    model.class_names = ["cat", "coffee", "rocket"][:num_classes]
    return model
