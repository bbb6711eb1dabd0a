"""P1: end-to-end extraction (decode, preprocess, forward, store) against pure forward on
pre-made tensors, and against the one-image-at-a-time NCHW loop of the original prototype."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import Row, interleaved, real_size_jpegs
from featscope.cache import FeatureStore
from featscope.extract import ExtractSettings, _ImageFiles, extract, pick_batch_size
from featscope.images import load_image
from featscope.models import ModelSpec, load_model


def run(quick: bool = False) -> list[Row]:
    n = 24 if quick else 96
    repeats = 1 if quick else 3
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = real_size_jpegs(Path(tmp) / "jpegs", n)
        for name, spec in [("ResNet-50", ModelSpec("resnet50", weights="none")),
                           ("EfficientNet-Lite0", ModelSpec("efficientnet-lite0"))]:
            rows += _one_model(name, spec, paths, Path(tmp), repeats)
    return rows


def _one_model(name, spec, paths, tmp: Path, repeats: int) -> list[Row]:
    bundle = load_model(spec)
    bs = pick_batch_size(bundle.device)
    batch = torch.stack([torch.from_numpy(bundle.preprocess.to_array(load_image(p)))
                         for p in paths[:bs]]).contiguous(memory_format=torch.channels_last)
    n = len(paths)
    nchw = load_model(spec)
    nchw.model.to(memory_format=torch.contiguous_format)

    def pure_forward() -> float:
        t = time.perf_counter()
        with torch.inference_mode():
            for _ in range(n // bs):
                bundle.model(batch)
        return (n // bs) * bs / (time.perf_counter() - t)

    counter = iter(range(10**6))

    def end_to_end() -> float:
        store = FeatureStore(tmp / f"store-{next(counter)}")
        items = [(f"{i:032x}", p) for i, p in enumerate(paths)]
        t = time.perf_counter()
        report = extract(bundle, items, store, ExtractSettings(progress=False))
        assert report.extracted == n
        return n / (time.perf_counter() - t)

    dataset = _ImageFiles([(f"{i:032x}", p) for i, p in enumerate(paths)], bundle.preprocess,
                          None)

    def decode_only() -> float:  # one core: read, decode (draft), resize, crop; seconds/image
        t = time.perf_counter()
        for i in range(n):
            dataset[i]
        return (time.perf_counter() - t) / n

    def one_at_a_time() -> float:
        t = time.perf_counter()
        feats = []
        with torch.inference_mode():
            for p in paths:
                x = bundle.preprocess.to_tensor(load_image(p))  # full decode, NCHW, batch 1
                feats.append(nchw.model(x).numpy())
        np.concatenate(feats)
        return n / (time.perf_counter() - t)

    with torch.inference_mode():  # warm-up of both layouts
        bundle.model(batch)
        nchw.model(batch[:1].contiguous())
    r = interleaved({"forward": pure_forward, "e2e": end_to_end, "loop": one_at_a_time,
                     "decode": decode_only}, repeats)
    # The best any pipeline can do when the forward pass already keeps every core busy:
    # the decoding work has to fit on the same cores, so images/s <= 1 / (1/f + d/cores).
    cores = torch.get_num_threads()
    bound = 1.0 / (1.0 / r["forward"] + r["decode"] / cores)
    detail = (f"e2e {r['e2e']:.1f} img/s, pure forward {r['forward']:.1f} img/s, "
              f"batch-1 NCHW loop {r['loop']:.1f} img/s (batch {bs}, channels_last); "
              f"decoding {r['decode'] * 1e3:.1f} ms/image on one core")
    return [
        Row("P1", f"{name}: end-to-end / pure forward", r["e2e"] / r["forward"], bar=">= 0.90",
            ok=r["e2e"] / r["forward"] >= 0.90, detail=detail),
        Row("P1", f"{name}: end-to-end / one-at-a-time NCHW", r["e2e"] / r["loop"],
            bar=">= 1.35", ok=r["e2e"] / r["loop"] >= 1.35),
        Row("P1", f"{name}: pure forward with decoding on the same cores / pure forward",
            bound / r["forward"],
            detail=f"the ceiling for end-to-end: {bound:.1f} img/s on {cores} threads; "
                   f"end-to-end reaches {r['e2e'] / bound:.2f} of it"),
    ]


if __name__ == "__main__":
    import sys

    for row in run("--quick" in sys.argv):
        print(row.markdown())
