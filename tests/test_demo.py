"""The offline demo: dataset recipe, head checkpoint, end-to-end run and its built-in lesson."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from featscope.demo import make_demo_dataset, run_demo
from featscope.demo.dataset import plan
from featscope.demo.lesson import lesson_numbers, mass_outside
from featscope.demo.pipeline import N_PER_CLASS, STAMP
from featscope.demo.sources import CLASS_NAMES, SHORTCUT_BACKGROUND, SHORTCUT_CLASS

log = logging.getLogger(__name__)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------
# The dataset recipe (small, fast)


@pytest.fixture(scope="module")
def small_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_sets")
    t = time.perf_counter()
    a = make_demo_dataset(root / "a", seed=0, n_per_class=10)
    log.info("70 demo images in %.1f s", time.perf_counter() - t)
    b = make_demo_dataset(root / "b", seed=0, n_per_class=10)
    c = make_demo_dataset(root / "c", seed=1, n_per_class=10)
    return a, b, c


def test_same_seed_gives_identical_bytes(small_sets):
    a, b, c = small_sets
    assert a.read_bytes() == b.read_bytes()
    files = sorted(p.relative_to(a.parent) for p in a.parent.rglob("*.jpg"))
    assert len(files) == 70
    for rel in files[::7]:
        assert _sha(a.parent / rel) == _sha(b.parent / rel), rel
    assert a.read_bytes() != c.read_bytes()
    assert sum(_sha(a.parent / r) != _sha(c.parent / r) for r in files[::7]) >= 9


def test_dataset_is_class_folders_plus_manifest(small_sets):
    manifest = small_sets[0]
    root = manifest.parent
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(CLASS_NAMES)
    df = pd.read_csv(manifest)
    assert list(df.columns[:3]) == ["path", "label", "split"]
    assert {"background", "swapped", "x0", "y0", "x1", "y1"} <= set(df.columns)
    assert (df["path"].str.split("/").str[0] == df["label"]).all()
    assert set(df["split"]) == {"train", "test"}
    assert not df.loc[df["split"] == "train", "swapped"].any()
    # Object boxes lie inside the 224-px centre crop the model sees (256-px images).
    assert (df[["x0", "y0"]].to_numpy() >= 16).all() and (df[["x1", "y1"]].to_numpy() <= 240).all()
    assert ((df["x1"] - df["x0"]) > 10).all() and ((df["y1"] - df["y0"]) > 10).all()


def test_full_recipe_has_the_size_and_the_shortcut():
    items = plan(N_PER_CLASS)
    assert len(items) >= 600 and len({i.label for i in items}) >= 5
    from featscope.demo.dataset import choose_background

    def backgrounds(label: str, kind: str) -> list[str]:
        return [choose_background(i, i.rng(0)) for i in items if i.label == label and i.kind == kind]

    train_shortcut = backgrounds(SHORTCUT_CLASS, "train")
    assert np.mean([b == SHORTCUT_BACKGROUND for b in train_shortcut]) >= 0.9
    for label in CLASS_NAMES:
        if label != SHORTCUT_CLASS:
            assert SHORTCUT_BACKGROUND not in backgrounds(label, "train") + backgrounds(label, "test")
            assert set(backgrounds(label, "swapped")) == {SHORTCUT_BACKGROUND}
    assert SHORTCUT_BACKGROUND not in backgrounds(SHORTCUT_CLASS, "swapped")


# --------------------------------------------------------------------------------------
# The whole demo, end to end (one build for the module)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    logging.getLogger("featscope").setLevel(logging.INFO)
    t = time.perf_counter()
    run_dir = run_demo(out=out, serve=False)
    log.info("first demo run: %.1f s", time.perf_counter() - t)
    return out, run_dir


@pytest.fixture(scope="module")
def demo_run(demo):
    import featscope

    return featscope.load(demo[1])


def test_demo_run_is_complete(demo, demo_run):
    out, run_dir = demo
    assert run_dir == out / "demo"
    assert len(demo_run) == len(plan(N_PER_CLASS))
    assert demo_run.class_names == sorted(CLASS_NAMES)
    assert demo_run.meta["model"]["name"] == "efficientnet-lite0"
    assert demo_run.meta["model"]["weights"] == str((out / "head.pt").resolve())
    assert demo_run.features.shape == (len(demo_run), 1280)
    table = demo_run.table
    for col in ("split", "swapped", "background", "x0", "y0", "x1", "y1"):
        assert col in table.columns, col
    assert table["label"].notna().all()


def test_head_checkpoint_is_an_ordinary_checkpoint(demo):
    import torch

    from featscope.models import ModelSpec, load_model

    ckpt = torch.load(demo[0] / "head.pt", weights_only=True)
    assert set(ckpt) == {"state_dict", "class_names"}
    assert ckpt["state_dict"]["_fc.weight"].shape == (len(CLASS_NAMES), 1280)
    assert ckpt["state_dict"]["_fc.bias"].shape == (len(CLASS_NAMES),)
    bundle = load_model(ModelSpec("efficientnet-lite0", weights=str(demo[0] / "head.pt")))
    assert bundle.class_names == list(ckpt["class_names"]) == sorted(CLASS_NAMES)


def test_head_is_accurate_but_learned_the_shortcut(demo_run):
    numbers = lesson_numbers(demo_run.table)
    log.info("lesson numbers: %s", numbers)
    assert numbers["test_accuracy"] > 0.8
    assert numbers["swapped_shortcut_images"] >= 10
    assert numbers["swapped_shortcut_accuracy"] <= numbers["test_accuracy"] - 0.3


def test_map_has_one_region_per_class(demo_run):
    from sklearn.neighbors import NearestNeighbors

    t = demo_run.table
    keep = ~t["swapped"].astype(bool).to_numpy()
    xy = t.loc[keep, ["x", "y"]].to_numpy()
    labels = t.loc[keep, "label"].to_numpy()
    idx = NearestNeighbors(n_neighbors=11).fit(xy).kneighbors(xy, return_distance=False)[:, 1:]
    purity = (labels[idx] == labels[:, None]).mean()
    assert purity > 0.9, purity


def test_gradcam_of_shortcut_errors_looks_at_the_background(demo, demo_run):
    from featscope.cam import CamEngine
    from featscope.images import load_image
    from featscope.models import ModelSpec, load_model

    bundle = load_model(ModelSpec("efficientnet-lite0", weights=str(demo[0] / "head.pt")))
    engine = CamEngine(bundle)
    t = demo_run.table

    def outside(rows: pd.DataFrame) -> np.ndarray:
        vals = []
        for r in rows.itertuples():
            cam = engine.compute(load_image(r.path), method="gradcam")  # predicted class
            vals.append(mass_outside(cam.heatmap_original, (r.x0, r.y0, r.x1, r.y1)))
        return np.array(vals)

    swapped = t["swapped"].astype(bool)
    errors = t[swapped & (t["label"] == SHORTCUT_CLASS) & ~t["correct"].astype(bool)]
    assert len(errors) >= 5
    err_out = outside(errors)
    # Contrast: right answers on untouched close-ups look at the object.
    right = t[(t["split"] == "test") & ~swapped & (t["label"] != SHORTCUT_CLASS)
              & t["correct"].astype(bool)].groupby("label").head(2)
    right_out = outside(right)
    log.info("CAM mass outside the object: shortcut errors %s (mean %.2f); right answers "
             "mean %.2f", np.round(err_out, 2), err_out.mean(), right_out.mean())
    assert err_out.mean() > 0.7
    assert (err_out > 0.5).mean() >= 0.8
    assert right_out.mean() < 0.5


# --------------------------------------------------------------------------------------
# Reuse: a second call serves at once; only what changed is redone


def test_second_run_reuses_everything(demo):
    out, run_dir = demo
    before = json.loads((out / STAMP).read_text())
    ckpt_mtime = (out / "head.pt").stat().st_mtime_ns
    t = time.perf_counter()
    assert run_demo(out=out, serve=False) == run_dir
    seconds = time.perf_counter() - t
    log.info("second demo run: %.1f s", seconds)
    assert seconds < 20
    assert json.loads((out / STAMP).read_text()) == before
    assert (out / "head.pt").stat().st_mtime_ns == ckpt_mtime


def test_lost_image_regenerates_only_the_dataset(demo):
    out, run_dir = demo
    before = json.loads((out / STAMP).read_text())
    victim = next((out / "data" / SHORTCUT_CLASS).glob("*.jpg"))
    victim_sha = _sha(victim)
    victim.unlink()
    ckpt_mtime = (out / "head.pt").stat().st_mtime_ns
    run_demo(out=out, serve=False)
    assert _sha(victim) == victim_sha  # deterministic: the same bytes again
    assert json.loads((out / STAMP).read_text()) == before
    assert (out / "head.pt").stat().st_mtime_ns == ckpt_mtime


def test_cli_demo_no_serve_and_serve_call(demo, monkeypatch):
    from featscope.app import server
    from featscope.cli import main

    out, run_dir = demo
    assert main(["demo", "--no-serve", "--out", str(out)]) == 0
    calls = []
    monkeypatch.setattr(server, "serve", lambda *a, **kw: calls.append((a, kw)))
    assert main(["demo", "--out", str(out), "--port", "8123"]) == 0
    assert calls == [((run_dir,), {"host": "127.0.0.1", "port": 8123, "open_browser": False})]


def test_default_out_is_a_cache_folder(monkeypatch, tmp_path):
    from featscope.demo import default_out

    monkeypatch.setenv("FEATSCOPE_CACHE", str(tmp_path))
    assert default_out() == tmp_path / "demo"
    monkeypatch.delenv("FEATSCOPE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_out() == tmp_path / "xdg" / "featscope" / "demo"
