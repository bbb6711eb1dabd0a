"""Messy folders, crashes at any stage, Ctrl-C and untrusted checkpoints: nothing lost, nothing let in."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import featscope
from featscope.errors import FeatscopeError
from featscope.models import ModelSpec, load_model
from helpers import make_class_dataset, photo

CLI = [sys.executable, "-m", "featscope.cli"]


def cli_build(data: Path, out: Path, *extra: str, env: dict | None = None, **kw):
    return subprocess.run(
        [*CLI, "build", str(data), "--out", str(out), "--model", "efficientnet-lite0", *extra],
        capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})}, **kw)


@pytest.fixture(scope="module")
def messy(tmp_path_factory) -> Path:
    """A class-folder dataset holding every kind of awkward file of issue 7."""
    root = make_class_dataset(tmp_path_factory.mktemp("messy"), n=3)
    cat, coffee = root / "cat", root / "coffee"
    good = (cat / "cat_000.jpg").read_bytes()
    (cat / "zero.jpg").write_bytes(b"")
    (cat / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (cat / "text.png").write_text("just text")
    photo("chelsea").save(cat / "png_named.jpg", format="PNG")
    Image.new("RGB", (1, 1), (9, 9, 9)).save(cat / "one_pixel.png")
    Image.new("1", (20000, 20000)).save(cat / "huge.png")
    arr16 = (np.asarray(photo("coffee").convert("L"), np.uint16) * 16)
    Image.fromarray(arr16).save(coffee / "sixteen_bit.png")
    photo("coffee").convert("CMYK").save(coffee / "cmyk.jpg")
    rgba = photo("coffee").convert("RGBA")
    rgba.save(coffee / "rgba.png")
    photo("coffee").convert("P").save(coffee / "palette.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    photo("coffee").save(coffee / "rotated.jpg", exif=exif)
    frames = [photo("coffee").resize((64, 48)), photo("chelsea").resize((64, 48))]
    frames[0].save(coffee / "anim.gif", save_all=True, append_images=frames[1:])
    (coffee / "corrupt.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"garbage" * 10)
    for name in ["with space.jpg", "ünïcödé 猫.jpg", "quote'\"s.jpg",
                 "<img src=x onerror=alert(1)>.jpg"]:
        (cat / name).write_bytes(good)
    (cat / "duplicate_of_000.jpg").write_bytes(good)
    (root / "empty_class").mkdir()
    (root / "rocket" / "loop").symlink_to(root / "rocket")  # a folder link into itself
    (root / "rocket" / "selfloop.jpg").symlink_to(root / "rocket" / "selfloop.jpg")
    locked = cat / "locked.jpg"
    locked.write_bytes(good)
    os.chmod(locked, 0)
    return root


def test_messy_folder_builds_every_good_image(messy, tmp_path):
    res = cli_build(messy, tmp_path / "run")
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    run = featscope.load(tmp_path / "run")
    names = set(run.table["name"])
    good = {"png_named.jpg", "one_pixel.png", "sixteen_bit.png", "cmyk.jpg", "rgba.png",
            "palette.png", "rotated.jpg", "anim.gif", "with space.jpg", "ünïcödé 猫.jpg",
            "quote'\"s.jpg", "<img src=x onerror=alert(1)>.jpg", "duplicate_of_000.jpg"}
    assert good <= names
    skipped = {Path(s["path"]).name: s["reason"] for s in run.skipped}
    expected_bad = {"zero.jpg", "truncated.jpg", "text.png", "huge.png", "corrupt.dcm",
                    "selfloop.jpg", "loop"}
    if os.geteuid() != 0:
        expected_bad.add("locked.jpg")  # root can read it; then it is simply a good image
    assert expected_bad <= set(skipped), skipped
    assert skipped["zero.jpg"] == "empty file (0 bytes)"
    assert skipped["huge.png"].startswith("image too large (20000x20000")
    assert skipped["selfloop.jpg"] == "symbolic link loop"
    assert "link loop" in skipped["loop"]
    # Each bad file is listed once, in run.json and in one console line.
    paths = [s["path"] for s in run.skipped]
    assert len(paths) == len(set(paths))
    for name in expected_bad - {"loop"}:
        assert sum(f"/{name}:" in line for line in res.stderr.splitlines()) == 1, name
    # Duplicated content is extracted once but appears under both names.
    dup = run.table[run.table["name"].isin(["cat_000.jpg", "duplicate_of_000.jpg"])]
    assert dup["hash"].nunique() == 1
    np.testing.assert_array_equal(run.features[dup["id"].iloc[0]], run.features[dup["id"].iloc[1]])


def test_exit_status_says_whether_anything_was_built(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"")
    (bad / "b.png").write_text("no")
    res = cli_build(bad, tmp_path / "run")
    assert res.returncode == 2
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("featscope: error:") and "no readable images" in last
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("stage", ["extract:8", "gather", "projection", "write"])
def test_sigkill_at_any_stage_then_rerun_gives_the_same_run(tmp_path, stage):
    data = make_class_dataset(tmp_path / "d", n=6)
    out = tmp_path / "run"
    # A previous complete build of a smaller dataset: readers must keep seeing it.
    first = make_class_dataset(tmp_path / "first", classes={"cat": "chelsea"}, n=3)
    featscope.build(first, out, model="efficientnet-lite0", progress=False)
    res = cli_build(data, out, "--chunk-size", "4", "--batch-size", "4",
                    env={"FEATSCOPE_FAULT_AT": stage})
    assert res.returncode == -signal.SIGKILL, res.stderr
    still = featscope.load(out)
    assert len(still) == 3  # the previous complete run, not a half-written one
    resumed = featscope.build(data, out, model="efficientnet-lite0", progress=False)
    reference = featscope.build(data, tmp_path / "ref", model="efficientnet-lite0",
                                progress=False)
    assert list(resumed.table["relpath"]) == list(reference.table["relpath"])
    np.testing.assert_allclose(np.asarray(resumed.features), np.asarray(reference.features),
                               atol=1e-5)
    np.testing.assert_allclose(resumed.table[["x", "y"]].to_numpy(),
                               reference.table[["x", "y"]].to_numpy(), atol=1e-4)
    assert len(list(out.glob("data-*"))) == 1  # leftovers of the killed build are cleaned
    if stage.startswith("extract"):
        assert resumed.meta["counts"]["extracted_now"] < 18  # it resumed, not restarted


def test_ctrl_c_stops_cleanly_and_keeps_what_was_extracted(tmp_path):
    data = make_class_dataset(tmp_path / "d", n=12)
    out = tmp_path / "run"
    # A real SIGINT, sent by the build to itself after 8 images (a Ctrl-C at a known point:
    # watching the progress bar from here raced with the build on a busy machine).
    # The child gets SIGINT's default action back: a shell running these tests in the
    # background ignores SIGINT, and Python then installs no KeyboardInterrupt handler.
    res = cli_build(data, out, "--chunk-size", "1000", "--batch-size", "4",
                    env={"FEATSCOPE_FAULT_AT": "extract:8", "FEATSCOPE_FAULT_SIGNAL": "INT"},
                    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert res.returncode == 130
    assert "interrupted" in res.stderr.strip().splitlines()[-1]
    assert "Traceback" not in res.stderr
    kept = sum(len(np.load(c / "hashes.npy")) for c in (out / "cache").glob("*/chunk-*"))
    assert 8 <= kept < 36  # the finished batches were flushed although the chunk was not full
    assert not (out / "run.json").exists()
    resumed = featscope.build(data, out, model="efficientnet-lite0", progress=False)
    assert resumed.meta["counts"]["extracted_now"] == 36 - kept


def test_untrusted_checkpoint_code_does_not_run(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    state = load_model(ModelSpec("efficientnet-lite0")).model.state_dict()
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        torch.save({"state_dict": state, "payload": Evil()}, fh, pickle_protocol=2)
    with pytest.raises(FeatscopeError, match="--trust-checkpoint"):
        load_model(ModelSpec("efficientnet-lite0", weights=str(path)))
    assert not marker.exists()
    # From the command line: one line, exit 2, no code run.
    photo("chelsea").save(tmp_path / "a.jpg")
    res = cli_build(tmp_path, tmp_path / "run", "--weights", str(path))
    assert res.returncode == 2 and "--trust-checkpoint" in res.stderr.splitlines()[-1]
    assert not marker.exists()
    # The user's explicit opt-in loads it (and so runs its code: that is what trust means).
    bundle = load_model(ModelSpec("efficientnet-lite0", weights=str(path), trust_checkpoint=True))
    assert len(bundle.class_names) == 1000
    assert marker.exists()
    assert pickle  # keep the import explicit for readers: the attack is a pickle


def test_load_never_sees_half_written_run_json(tmp_path, lite_run):
    meta = json.loads((lite_run.path / "run.json").read_text())
    assert meta["data_dir"] in {p.name for p in lite_run.path.glob("data-*")}
    # Temporary files of atomic writes never carry the final name.
    assert not list(lite_run.path.glob(".run.json.*"))
