"""The numbers that show the demo's lesson: where the head is right, where the shortcut bites."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .sources import SHORTCUT_BACKGROUND, SHORTCUT_CLASS


def _accuracy(rows: pd.DataFrame) -> float:
    return float((rows["pred"] == rows["label"]).mean()) if len(rows) else float("nan")


def lesson_numbers(table: pd.DataFrame) -> dict[str, Any]:
    """Accuracies of a demo run's table (columns label, pred, split, swapped, background)."""
    test = table[table["split"] == "test"]
    swapped = test["swapped"].astype(bool)
    shortcut = test["label"] == SHORTCUT_CLASS
    on_grass = test[swapped & ~shortcut]
    return {
        "train_accuracy": _accuracy(table[table["split"] == "train"]),
        "test_accuracy": _accuracy(test[~swapped]),
        "swapped_shortcut_accuracy": _accuracy(test[swapped & shortcut]),
        "swapped_shortcut_images": int((swapped & shortcut).sum()),
        "others_on_grass_accuracy": _accuracy(on_grass),
        "others_on_grass_called_shortcut": int((on_grass["pred"] == SHORTCUT_CLASS).sum()),
    }


def describe(numbers: dict[str, Any]) -> str:
    return (
        f"test accuracy {numbers['test_accuracy']:.0%} on untouched images, "
        f"{numbers['swapped_shortcut_accuracy']:.0%} on {SHORTCUT_CLASS}s moved off "
        f"{SHORTCUT_BACKGROUND}; {numbers['others_on_grass_called_shortcut']} other objects "
        f"on {SHORTCUT_BACKGROUND} called {SHORTCUT_CLASS}"
    )


def mass_outside(heatmap: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Share of a heatmap's mass (over the original image; NaN = unseen) outside ``box``."""
    heat = np.nan_to_num(np.asarray(heatmap, dtype=np.float64), nan=0.0)
    total = heat.sum()
    if total <= 0:
        return float("nan")
    x0, y0, x1, y1 = (int(v) for v in box)
    return float(1.0 - heat[y0:y1, x0:x1].sum() / total)
