from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import CHROMIUM, CHROMIUM_ARGS, make_class_dataset, save_head_checkpoint  # noqa: E402


@pytest.fixture(scope="session")
def class_dataset(tmp_path_factory) -> Path:
    """3 classes x 10 real-photo crops (cat, coffee, rocket)."""
    return make_class_dataset(tmp_path_factory.mktemp("classes"), n=10)


@pytest.fixture(scope="session")
def imagenet_run(class_dataset, tmp_path_factory):
    """A real run of efficientnet-lite0 with its ImageNet weights on ``class_dataset``."""
    import featscope

    logging.getLogger("featscope").setLevel(logging.INFO)
    return featscope.build(class_dataset, tmp_path_factory.mktemp("imagenet") / "run",
                           model="efficientnet-lite0", progress=False)


@pytest.fixture(scope="session")
def head_checkpoint(imagenet_run, tmp_path_factory) -> Path:
    """A fine-tuned 3-class efficientnet-lite0 checkpoint (class names inside)."""
    path = tmp_path_factory.mktemp("ckpt") / "lite0_3class.pt"
    return save_head_checkpoint(imagenet_run, path, ["cat", "coffee", "rocket"])


@pytest.fixture(scope="session")
def lite_run(class_dataset, head_checkpoint, tmp_path_factory):
    """A real run of a fine-tuned efficientnet-lite0 whose classes match the labels."""
    import featscope

    return featscope.build(class_dataset, tmp_path_factory.mktemp("run") / "run",
                           model="efficientnet-lite0", weights=head_checkpoint, progress=False)


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium through Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
