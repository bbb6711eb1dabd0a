"""P3: the server's Grad-CAM for one image against one plain forward pass of that image, the
target-class switch of an already-clicked image, and pytorch-grad-cam's standard path."""

from __future__ import annotations

import sys
import time

import torch

from common import Row, interleaved
from featscope.cam import CamEngine
from featscope.models import ModelSpec, load_model
from helpers import photo


def run(quick: bool = False) -> list[Row]:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    rows = []
    reps = 3 if quick else 9
    images = [photo(n) for n in ("chelsea", "coffee", "rocket", "astronaut")]
    for name, spec in [("ResNet-50", ModelSpec("resnet50", weights="none")),
                       ("EfficientNet-Lite0", ModelSpec("efficientnet-lite0"))]:
        bundle = load_model(spec)
        engine = CamEngine(bundle)
        x = bundle.preprocess.to_tensor(images[0]).contiguous(memory_format=torch.channels_last)
        counter = iter(range(10**9))

        def forward() -> float:
            t = time.perf_counter()
            with torch.inference_mode():
                bundle.model(bundle.preprocess.to_tensor(images[0]).contiguous(
                    memory_format=torch.channels_last))
            return time.perf_counter() - t

        def click() -> float:  # a new image each time: nothing cached
            i = next(counter)
            t = time.perf_counter()
            engine.compute(images[i % 4], "gradcam", key=("bench", i))
            return time.perf_counter() - t

        def switch() -> float:  # another class of the image clicked last
            engine.compute(images[0], "gradcam", key="switch")
            t = time.perf_counter()
            engine.compute(images[0], "gradcam", target=int(next(counter) % 1000), key="switch")
            return time.perf_counter() - t

        def standard() -> float:
            # Frozen weights: the input must require grad for the full-model backward.
            xx = x.detach().clone().requires_grad_(True)
            t = time.perf_counter()
            with GradCAM(bundle.model, [bundle.cam_layer]) as cam:
                cam(input_tensor=xx, targets=[ClassifierOutputTarget(1)])
            return time.perf_counter() - t

        for fn in (forward, click, switch, standard):
            fn()  # warm-up
        r = interleaved({"forward": forward, "click": click, "switch": switch,
                         "standard": standard}, reps)
        detail = (f"forward {r['forward'] * 1e3:.0f} ms, CAM {r['click'] * 1e3:.0f} ms, "
                  f"switch {r['switch'] * 1e3:.1f} ms, pytorch-grad-cam standard "
                  f"{r['standard'] * 1e3:.0f} ms")
        rows.append(Row("P3", f"{name}: Grad-CAM click / plain forward",
                        r["click"] / r["forward"], bar="<= 1.2",
                        ok=r["click"] / r["forward"] <= 1.2, detail=detail))
        rows.append(Row("P3", f"{name}: target switch / plain forward",
                        r["switch"] / r["forward"], bar="<= 0.1",
                        ok=r["switch"] / r["forward"] <= 0.1))
        rows.append(Row("P3", f"{name}: standard path / fast path", r["standard"] / r["click"]))
    return rows


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        print(row.markdown())
