"""Train the demo's classifier head on frozen EfficientNet-Lite0 features.

The head is saved as an ordinary fine-tuned checkpoint ({"state_dict", "class_names"}), so
``featscope build --model efficientnet-lite0 --weights FILE`` loads it like any user's model.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..atomic import write_atomic
from ..extract import FeatureHook, forward_batch
from ..images import open_image
from ..models import ModelBundle, ModelSpec, load_model

log = logging.getLogger(__name__)

MODEL = "efficientnet-lite0"
# Inverse L2 strength of the logistic regression: confident on ordinary images (mean top
# probability ~0.98 on the untouched test images) without over-fitting 60 images a class.
HEAD_C = 0.1


def extract_features(
    paths: Sequence[Path], bundle: ModelBundle, batch_size: int = 8, progress: bool = True
) -> np.ndarray:
    """Features [N, D] of ``paths``: the classifier's input, read exactly as ``build`` reads."""
    hook = FeatureHook(bundle)
    pre = bundle.preprocess
    out: list[np.ndarray] = []
    try:
        with tqdm(total=len(paths), desc="training features", unit="img",
                  disable=not progress) as bar:
            for i in range(0, len(paths), batch_size):
                batch = [pre.to_array(open_image(p, draft_min_side=pre.resize)[0])
                         for p in paths[i : i + batch_size]]
                feats, _ = forward_batch(bundle, hook, torch.from_numpy(np.stack(batch)))
                out.append(feats)
                bar.update(len(batch))
    finally:
        hook.remove()
    return np.concatenate(out)


def train_head(
    features: np.ndarray, labels: Sequence[str], class_names: Sequence[str], seed: int = 0,
    c: float = HEAD_C,
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression; returns (weight [K, D], bias [K]) in class_names order."""
    from sklearn.linear_model import LogisticRegression

    y = np.array([list(class_names).index(str(v)) for v in labels])
    if len(set(y)) != len(class_names):
        raise ValueError("every class needs training images")
    clf = LogisticRegression(C=c, max_iter=5000, random_state=seed)
    clf.fit(np.asarray(features, dtype=np.float64), y)
    return clf.coef_.astype(np.float32), clf.intercept_.astype(np.float32)


def save_checkpoint(
    path: Path, weight: np.ndarray, bias: np.ndarray, class_names: Sequence[str],
    bundle: ModelBundle,
) -> Path:
    """The full model state with the new ``_fc`` head, written atomically."""
    state = {k: v.detach().clone().contiguous() for k, v in bundle.model.state_dict().items()}
    state["_fc.weight"] = torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float32))
    state["_fc.bias"] = torch.from_numpy(np.ascontiguousarray(bias, dtype=np.float32))
    ckpt = {"state_dict": state, "class_names": list(class_names)}
    write_atomic(Path(path), lambda tmp: torch.save(ckpt, tmp))
    return Path(path)


def train_demo_head(manifest: Path, checkpoint: Path, seed: int = 0,
                    progress: bool = True) -> Path:
    """Fit the head on the manifest's training split and save it as ``checkpoint``."""
    manifest = Path(manifest)
    table = pd.read_csv(manifest)
    train = table[table["split"] == "train"]
    class_names = sorted(table["label"].unique())
    bundle = load_model(ModelSpec(MODEL))  # the ImageNet backbone, frozen
    log.info("training the demo head on %d training images (%d classes)", len(train),
             len(class_names))
    feats = extract_features([manifest.parent / p for p in train["path"]], bundle,
                             progress=progress)
    weight, bias = train_head(feats, train["label"].tolist(), class_names, seed=seed)
    return save_checkpoint(checkpoint, weight, bias, class_names, bundle)
