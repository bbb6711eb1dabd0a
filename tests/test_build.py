"""featscope build: inputs, models, checkpoints, cache, resume, bad files (real models, real files)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import featscope
from featscope.errors import FeatscopeError, IncompleteRunError
from helpers import make_class_dataset, photo

IMAGENET_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
CLI = [sys.executable, "-m", "featscope.cli"]


def build(data, out, **kw):
    kw.setdefault("model", "efficientnet-lite0")
    kw.setdefault("progress", False)
    return featscope.build(data, out, **kw)


def test_class_folders_table_and_files(imagenet_run, class_dataset):
    run = imagenet_run
    t = run.table
    assert len(t) == 30
    assert list(t["id"]) == list(range(30))
    assert set(t["label"]) == {"cat", "coffee", "rocket"}
    assert run.features.shape == (30, 1280)  # input of EfficientNet-Lite0's final layer
    assert run.probs.shape == (30, 1000)
    np.testing.assert_allclose(run.probs.sum(axis=1), 1.0, atol=1e-4)
    assert isinstance(run.features, np.memmap)
    # Predictions agree with the stored probabilities.
    assert (t["pred_index"].to_numpy() == run.probs.argmax(axis=1)).all()
    np.testing.assert_allclose(t["confidence"], run.probs.max(axis=1), rtol=1e-6)
    assert all(len(v) == 5 for v in t["top5_labels"])
    assert all(np.all(np.diff(v) <= 0) for v in t["top5_probs"])
    assert t[["x", "y"]].notna().all().all()
    assert (t["width"] > 0).all() and (t["height"] > 0).all()
    # ImageNet names do not contain the folder labels: correctness is unknown, not False.
    assert t["correct"].isna().all()
    meta = json.loads((run.path / "run.json").read_text())
    assert meta["model"]["name"] == "efficientnet-lite0"
    assert meta["preprocess"]["crop"] == 224
    assert meta["featscope_version"] == featscope.__version__
    assert meta["model"]["weights_fingerprint"].startswith("imagenet:")
    assert "extract" in meta["timings"] and "project" in meta["timings"]


def test_efficientnet_lite0_sees_a_cat_in_chelsea(imagenet_run):
    t = imagenet_run.table
    cats = t[t["label"] == "cat"]
    # The real ImageNet weights put most random crops of chelsea into an ImageNet cat class.
    assert (cats["pred_index"].isin(IMAGENET_CATS)).mean() >= 0.8
    coffee = t[t["label"] == "coffee"]
    assert not coffee["pred_index"].isin(IMAGENET_CATS).any()


def test_features_cluster_by_class(imagenet_run):
    t = imagenet_run.table
    xy = t[["x", "y"]].to_numpy()
    labels = t["label"].to_numpy()
    # Nearest map neighbour of each point has the same class for nearly every point.
    d = ((xy[:, None] - xy[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (labels[d.argmin(1)] == labels).mean() > 0.9


def test_flat_folder_is_unlabelled(tmp_path):
    data = tmp_path / "flat"
    data.mkdir()
    photo("chelsea").save(data / "a.jpg")
    photo("coffee").save(data / "b.png")
    sub = data / "nested"
    sub.mkdir()
    photo("rocket").save(sub / "c.jpg")
    run = build(data, tmp_path / "run")
    assert sorted(run.table["relpath"]) == ["a.jpg", "b.png", "nested/c.jpg"]
    assert run.table["label"].isna().all()
    assert not run.has_labels
    assert run.table["correct"].isna().all()


def test_manifest_csv_keeps_columns_and_resolves_relative_paths(tmp_path):
    data = make_class_dataset(tmp_path / "imgs", n=3)
    rows = []
    for i, p in enumerate(sorted(data.rglob("*.jpg"))):
        rows.append({"path": str(p.relative_to(tmp_path)), "label": p.parent.name,
                     "split": "train" if i % 2 else "test", "site": f"hospital-{i % 3}"})
    rows.append({"path": "imgs/missing.jpg", "label": "cat", "split": "test", "site": "x"})
    rows.append({"path": rows[0]["path"], "label": "cat", "split": "test", "site": "dup"})
    rows.append({"path": "../outside.jpg", "label": "cat", "split": "test", "site": "x"})
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    run = build(manifest, tmp_path / "run")
    t = run.table
    assert len(t) == 9
    assert set(t["split"]) == {"train", "test"}
    assert t["site"].str.startswith("hospital-").all()
    reasons = {Path(s["path"]).name: s["reason"] for s in run.skipped}
    assert "file not found" in reasons["missing.jpg"]
    assert "duplicate path" in next(r for p, r in reasons.items() if "duplicate" in r)
    assert "leaves the manifest's folder" in reasons["outside.jpg"]


def test_manifest_parquet(tmp_path):
    data = make_class_dataset(tmp_path / "imgs", classes={"cat": "chelsea"}, n=4)
    paths = [str(p) for p in sorted(data.rglob("*.jpg"))]  # absolute paths
    pq = tmp_path / "m.parquet"
    pd.DataFrame({"path": paths, "label": ["cat"] * 4}).to_parquet(pq)
    run = build(pq, tmp_path / "run")
    assert sorted(run.table["path"]) == sorted(paths)


def test_resnet50_architecture_path(tmp_path, class_dataset):
    run = build(class_dataset, tmp_path / "run", model="resnet50", weights="none")
    assert run.features.shape == (30, 2048)  # ResNet-50's penultimate layer
    assert run.meta["model"]["cam_layer"] == "layer4"
    assert run.meta["model"]["classifier_layer"] == "fc"
    assert run.meta["preprocess"]["resize"] == 232  # from the IMAGENET1K_V2 weights' transforms
    # "none" is one fixed random model: a second full build reuses every feature.
    again = build(class_dataset, tmp_path / "run", model="resnet50", weights="none",
                  reproject=True)
    assert again.meta["counts"]["extracted_now"] == 0


def test_fine_tuned_checkpoint_two_classes(tmp_path, imagenet_run):
    from helpers import save_head_checkpoint

    sub = imagenet_run.table["label"].isin(["cat", "coffee"]).to_numpy()
    two = type(imagenet_run)(
        path=imagenet_run.path, meta=imagenet_run.meta, table=imagenet_run.table[sub],
        features=np.asarray(imagenet_run.features)[sub], probs=imagenet_run.probs[sub])
    ckpt = save_head_checkpoint(two, tmp_path / "ft.pt", ["cat", "coffee"])
    data = make_class_dataset(tmp_path / "d", classes={"cat": "chelsea", "coffee": "coffee"},
                              n=5, seed=7)
    run = build(data, tmp_path / "run", weights=ckpt)
    assert run.class_names == ["cat", "coffee"]
    assert run.probs.shape == (10, 2)
    assert run.meta["model"]["class_names_source"] == "checkpoint"
    assert run.table["correct"].all()  # a head fitted on these photos gets them right
    # Names from --classes when the checkpoint has none; here a bare state_dict.
    bare = tmp_path / "bare.pt"
    torch.save(torch.load(ckpt, weights_only=True)["state_dict"], bare)
    names = tmp_path / "names.txt"
    names.write_text("kitty\nespresso\n")
    run2 = build(data, tmp_path / "run2", weights=bare, classes=names)
    assert run2.class_names == ["kitty", "espresso"]
    # ... and from the dataset's folders when neither is given.
    run3 = build(data, tmp_path / "run3", weights=bare)
    assert run3.class_names == ["cat", "coffee"]
    assert run3.meta["model"]["class_names_source"] == "dataset folders"


def test_cache_reuse_and_incremental_add(tmp_path):
    data = make_class_dataset(tmp_path / "d", n=14)
    out = tmp_path / "run"
    first = build(data, out)
    assert first.meta["counts"]["extracted_now"] == 42
    # Nothing changed: the stored run is returned as it is.
    same = build(data, out)
    assert same.meta["build_id"] == first.meta["build_id"]
    # A touched file (same bytes, new mtime) goes through a full build that reuses everything.
    touched = data / "cat" / "cat_000.jpg"
    os.utime(touched, ns=(time.time_ns(), time.time_ns()))
    again = build(data, out)
    assert again.meta["build_id"] != first.meta["build_id"]
    assert again.meta["counts"]["extracted_now"] == 0
    assert again.meta["projection"]["method"] == "reused from cache"
    np.testing.assert_array_equal(np.asarray(first.features), np.asarray(again.features))
    # Only the stale data folder of the first build is gone; one data folder remains.
    assert len(list(out.glob("data-*"))) == 1
    make_class_dataset(tmp_path / "extra", classes={"cat": "chelsea"}, n=2, seed=99)
    for p in (tmp_path / "extra" / "cat").iterdir():
        shutil.copy(p, data / "cat" / f"new_{p.name}")
    added = build(data, out)
    assert added.meta["counts"]["extracted_now"] == 2
    assert len(added) == 44
    # The existing map keeps its layout; the new cats land among the cats.
    assert added.meta["projection"]["method"].startswith("incremental: 2 new images")
    old = first.table.set_index("relpath")[["x", "y"]]
    now = added.table.set_index("relpath")[["x", "y"]]
    np.testing.assert_allclose(now.loc[old.index].to_numpy(), old.to_numpy(), atol=1e-6)
    t = added.table
    xy = t[["x", "y"]].to_numpy()
    for i in t.index[t["relpath"].str.contains("new_")]:
        d = ((xy - xy[i]) ** 2).sum(1)
        d[t["relpath"].str.contains("new_").to_numpy()] = np.inf
        assert t["label"].iloc[int(d.argmin())] == "cat"
    fresh = build(data, out, reproject=True)
    assert fresh.meta["projection"]["method"].endswith("UMAP")
    assert fresh.meta["counts"]["extracted_now"] == 0
    # Changing only projection parameters recomputes the projection, not the features.
    reproj = build(data, out, neighbors=5)
    assert reproj.meta["counts"]["extracted_now"] == 0
    assert reproj.meta["projection"]["method"].endswith("UMAP")
    # A different model recomputes.
    other = build(data, out, model="resnet50", weights="none")
    assert other.meta["counts"]["extracted_now"] == 44


def test_resume_after_kill(tmp_path):
    data = make_class_dataset(tmp_path / "d", n=14)  # 42 images
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [*CLI, "build", str(data), "--out", str(out), "--model", "efficientnet-lite0",
         "--chunk-size", "8", "--batch-size", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
    )
    cache = out / "cache"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if len(list(cache.glob("*/chunk-*"))) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "build finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "run.json").exists()
    with pytest.raises(IncompleteRunError):
        featscope.load(out)
    done_before = sum(len(np.load(c / "hashes.npy")) for c in cache.glob("*/chunk-*"))
    assert 16 <= done_before < 42
    resumed = build(data, out)
    assert resumed.meta["counts"]["extracted_now"] == 42 - done_before
    reference = build(data, tmp_path / "ref")
    np.testing.assert_allclose(np.asarray(resumed.features), np.asarray(reference.features),
                               rtol=1e-5, atol=1e-5)
    assert list(resumed.table["path"]) == list(reference.table["path"])


def test_bad_files_are_skipped_with_reasons(tmp_path):
    data = make_class_dataset(tmp_path / "d", classes={"cat": "chelsea"}, n=3)
    cat = data / "cat"
    (cat / "empty.jpg").write_bytes(b"")
    (cat / "text.png").write_text("hello, I am not a PNG")
    good = (cat / "cat_000.jpg").read_bytes()
    (cat / "truncated.jpg").write_bytes(good[: len(good) // 3])
    run = build(data, tmp_path / "run")
    assert len(run) == 3
    reasons = {Path(s["path"]).name: s["reason"] for s in run.skipped}
    assert reasons == {
        "empty.jpg": "empty file (0 bytes)",
        "text.png": "not an image (unrecognised file format)",
        "truncated.jpg": reasons["truncated.jpg"],
    }
    assert reasons["truncated.jpg"].startswith("truncated or corrupt image")
    meta = json.loads((run.path / "run.json").read_text())
    assert len(meta["skipped"]) == 3


@pytest.mark.parametrize("n", [1, 2, 3])
def test_tiny_datasets(tmp_path, n):
    data = tmp_path / "d"
    data.mkdir()
    for i, name in enumerate(["chelsea", "coffee", "rocket"][:n]):
        photo(name).save(data / f"{i}.jpg")
    run = build(data, tmp_path / "run")
    assert len(run) == n
    assert np.isfinite(run.table[["x", "y"]].to_numpy()).all()
    assert "PCA" in run.meta["projection"]["method"]


def test_clear_errors(tmp_path):
    with pytest.raises(FeatscopeError, match="no such file or folder"):
        build(tmp_path / "nope", tmp_path / "run")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FeatscopeError, match="no images found"):
        build(empty, tmp_path / "run")
    photo("chelsea").save(empty / "a.jpg")
    with pytest.raises(FeatscopeError, match="unknown model 'vgg-nope'"):
        build(empty, tmp_path / "run", model="vgg-nope")
    with pytest.raises(FeatscopeError, match=r"no layer named 'layer9'.*valid names.*_head_act"):
        build(empty, tmp_path / "run", cam_layer="layer9")


def test_cli_errors_are_one_line_without_traceback(tmp_path):
    res = subprocess.run([*CLI, "build", str(tmp_path / "missing"), "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1] == (
        f"featscope: error: {tmp_path / 'missing'}: no such file or folder")
    # ResNet-50's default weights cannot be downloaded offline: the error names both ways out.
    photo("chelsea").save(tmp_path / "a.jpg")
    res = subprocess.run([*CLI, "build", str(tmp_path), "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "TORCH_HOME": str(tmp_path / "torch")})
    if res.returncode == 0:  # a machine with internet fetched the weights: that is fine too
        return
    last = res.stderr.strip().splitlines()[-1]
    assert "Traceback" not in res.stderr
    assert "--model efficientnet-lite0" in last and "--weights FILE" in last


def test_cli_build_writes_a_loadable_run(tmp_path):
    data = make_class_dataset(tmp_path / "d", classes={"cat": "chelsea"}, n=4)
    res = subprocess.run([*CLI, "build", str(data), "--out", str(tmp_path / "run"),
                          "--model", "efficientnet-lite0"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "run written to" in res.stdout
    assert len(featscope.load(tmp_path / "run")) == 4


def test_load_reports_incomplete_runs(tmp_path):
    with pytest.raises(FeatscopeError, match="no such run directory"):
        featscope.load(tmp_path / "nothing")
    (tmp_path / "half").mkdir()
    with pytest.raises(IncompleteRunError, match="no complete run"):
        featscope.load(tmp_path / "half")


def test_python_factory_model(tmp_path, class_dataset, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    run = build(class_dataset, tmp_path / "run", model="python:helpers:tiny_classifier")
    assert run.features.shape == (30, 32)  # input of the tiny net's fc layer
    assert run.class_names == ["cat", "coffee", "rocket"]
    assert run.meta["preprocess"]["crop"] == 64
    assert run.meta["model"]["cam_layer"] == "features"
    assert run.meta["model"]["fast_cam_head"] is True


def test_torchscript_model_with_feature_output(tmp_path, class_dataset):
    from helpers import tiny_classifier

    class WithFeatures(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = tiny_classifier()

        def forward(self, x):
            f = torch.flatten(self.net.avgpool(self.net.features(x)), 1)
            return self.net.fc(f), f

    path = tmp_path / "model.ts"
    torch.jit.script(WithFeatures().eval()).save(str(path))
    run = build(class_dataset, tmp_path / "run", model=str(path))
    assert run.features.shape == (30, 32)  # the second output, not the 3 logits
    assert run.probs.shape == (30, 3)
    np.testing.assert_allclose(run.probs.sum(1), 1, atol=1e-5)


def test_new_head_reuses_features_and_recomputes_predictions(tmp_path, head_checkpoint):
    from featscope.images import open_image
    from featscope.models import ModelSpec, load_model

    data = make_class_dataset(tmp_path / "d", n=4)
    out = tmp_path / "run"
    first = build(data, out)  # ImageNet head: 1000 classes
    assert first.probs.shape == (12, 1000)
    tuned = build(data, out, weights=head_checkpoint)  # retrained head, same backbone
    assert tuned.meta["counts"]["extracted_now"] == 0
    assert tuned.probs.shape == (12, 3) and tuned.class_names == ["cat", "coffee", "rocket"]
    np.testing.assert_array_equal(np.asarray(first.features), np.asarray(tuned.features))
    # The recomputed predictions equal a real forward pass of the fine-tuned model.
    bundle = load_model(ModelSpec("efficientnet-lite0", weights=str(head_checkpoint)))
    for i in (0, 5, 11):
        path = tuned.table["path"].iloc[i]
        img, _ = open_image(path, draft_min_side=bundle.preprocess.resize)  # as the build reads
        with torch.inference_mode():
            p = torch.softmax(bundle.model(bundle.preprocess.to_tensor(img)), 1)[0].numpy()
        np.testing.assert_allclose(tuned.probs[i], p, atol=1e-4)
    assert tuned.table["correct"].all()


def test_unchanged_rebuild_skips_everything_and_any_change_rebuilds(tmp_path):
    data = make_class_dataset(tmp_path / "d", classes={"cat": "chelsea", "coffee": "coffee"},
                              n=3)
    out = tmp_path / "run"
    args = ["build", str(data), "--out", str(out), "--model", "efficientnet-lite0"]
    res = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    first = featscope.load(out).meta["build_id"]
    # The rebuild of an unchanged dataset never imports torch.
    code = ("import sys; from featscope.cli import main; rc = main(sys.argv[1:]); "
            "print('TORCH', 'torch' in sys.modules); sys.exit(rc)")
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr
    assert "TORCH False" in res.stdout
    assert "up to date" in res.stderr
    assert featscope.load(out).meta["build_id"] == first

    def rebuilt(**kw) -> bool:
        before = featscope.load(out).meta["build_id"]
        return build(data, out, **kw).meta["build_id"] != before

    assert not rebuilt()
    assert rebuilt(seed=1)  # any parameter
    assert not rebuilt(seed=1)
    cat = data / "cat" / "cat_000.jpg"
    with open(cat, "ab") as fh:  # new content
        fh.write(b"\0")
    assert rebuilt(seed=1)
    shutil.move(data / "coffee" / "coffee_000.jpg", data / "cat" / "moved.jpg")  # a label
    assert rebuilt(seed=1)
    assert rebuilt(seed=1, reproject=True)  # asked for explicitly
    assert rebuilt(seed=1, model="resnet50", weights="none")  # another model
    # A damaged run is built again, not returned.
    meta = featscope.load(out).meta
    shutil.rmtree(out / meta["data_dir"])
    assert len(build(data, out, seed=1, model="resnet50", weights="none")) == 6
