"""The offline demo: a labelled dataset made from photos that ship with scikit-image and
scikit-learn, an EfficientNet-Lite0 head trained on it, and a run to explore.

It carries a lesson: every training horse stands on grass and nothing else does,
so the head learns "grass means horse"; the test split's swapped backgrounds expose it.
"""

from .dataset import make_demo_dataset
from .pipeline import default_out, run_demo
from .train import train_head

__all__ = ["default_out", "make_demo_dataset", "run_demo", "train_head"]
