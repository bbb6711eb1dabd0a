"""bf16 autocast against fp32: speed of the forward pass and cosine similarity of features."""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from common import Row, interleaved
from featscope.extract import FeatureHook, forward_batch
from featscope.models import ModelSpec, load_model


def run(quick: bool = False) -> list[Row]:
    rows = []
    for name, spec in [("ResNet-50", ModelSpec("resnet50", weights="none")),
                       ("EfficientNet-Lite0", ModelSpec("efficientnet-lite0"))]:
        bundle = load_model(spec)
        hook = FeatureHook(bundle)
        torch.manual_seed(0)
        x = torch.randn(8, 3, 224, 224)
        rounds = 2 if quick else 5

        def speed(precision: str) -> float:
            t = time.perf_counter()
            for _ in range(rounds):
                forward_batch(bundle, hook, x, precision)
            return rounds * 8 / (time.perf_counter() - t)

        speed("fp32"), speed("bf16")  # warm-up
        r = interleaved({"fp32": lambda: speed("fp32"), "bf16": lambda: speed("bf16")},
                        1 if quick else 3)
        f32, _ = forward_batch(bundle, hook, x, "fp32")
        f16, _ = forward_batch(bundle, hook, x, "bf16")
        cos = (f32 * f16).sum(1) / (np.linalg.norm(f32, axis=1) * np.linalg.norm(f16, axis=1))
        rows.append(Row("bf16", f"{name}: bf16 / fp32 images/s", r["bf16"] / r["fp32"],
                        detail=f"fp32 {r['fp32']:.1f}, bf16 {r['bf16']:.1f} img/s"))
        rows.append(Row("bf16", f"{name}: min cosine(fp32, bf16 features)", float(cos.min()),
                        unit="", bar=">= 0.99", ok=float(cos.min()) >= 0.99))
        hook.remove()
    return rows


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        print(row.markdown())
