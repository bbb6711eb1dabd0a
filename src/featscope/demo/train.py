"""Train the demo's classifier head on frozen EfficientNet-Lite0 features.

The head is saved as an ordinary fine-tuned checkpoint ({"state_dict", "class_names"}), so
``featscope build --model efficientnet-lite0 --weights FILE`` loads it like any user's model.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..atomic import write_atomic
from ..models import ModelBundle, ModelSpec, load_model

log = logging.getLogger(__name__)

MODEL = "efficientnet-lite0"
# Inverse L2 strength of the logistic regression: confident on ordinary images (mean top
# probability ~0.98 on the untouched test images) without over-fitting 60 images a class.
HEAD_C = 0.1


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


def train_demo_head(manifest: Path, checkpoint: Path, run_dir: Path, seed: int = 0,
                    progress: bool = True) -> Path:
    """Fit the head on the manifest's training split and save it as ``checkpoint``.

    The features come from an ordinary ``featscope build`` with the ImageNet head into
    ``run_dir``: it extracts every image once, and the later build with the trained head
    reuses those features (same backbone) instead of extracting again.
    """
    import featscope

    run = featscope.build(manifest, run_dir, model=MODEL, seed=seed, progress=progress)
    train = (run.table["split"] == "train").to_numpy()
    labels = run.table["label"][train].astype(str).tolist()
    class_names = sorted(run.table["label"].dropna().astype(str).unique())
    log.info("training the demo head on %d training images (%d classes)", int(train.sum()),
             len(class_names))
    weight, bias = train_head(np.asarray(run.features)[train], labels, class_names, seed=seed)
    bundle = load_model(ModelSpec(MODEL))  # the ImageNet backbone the head sits on
    return save_checkpoint(checkpoint, weight, bias, class_names, bundle)
