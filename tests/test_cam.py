"""CamEngine: the head (fast) path equals pytorch-grad-cam on the full model, and the engine
is safe to call from several threads."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_grad_cam import (
    AblationCAM,
    AblationLayer,
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from featscope.cam import (
    GRADIENT_METHODS,
    METHODS,
    SLOW_METHODS,
    CamCancelled,
    CamEngine,
    CamResult,
    colorize,
    estimate_seconds,
    overlay,
)
from featscope.errors import FeatscopeError
from featscope.models import ModelBundle, ModelSpec, load_model
from featscope.preprocessing import Preprocess

skdata = pytest.importorskip("skimage.data")

# pytorch-grad-cam's classes, used as documented (full model, CAM layer as target layer).
LIBRARY = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "xgradcam": XGradCAM,
    "hirescam": HiResCAM,
    "layercam": LayerCAM,
    "eigencam": EigenCAM,
}
TOL = 1e-4


@pytest.fixture(scope="module")
def lite() -> ModelBundle:
    return load_model(ModelSpec("efficientnet-lite0"))


@pytest.fixture(scope="module")
def resnet() -> ModelBundle:
    torch.manual_seed(0)
    return load_model(ModelSpec("resnet50", weights="none"))


@pytest.fixture(scope="module")
def lite_engine(lite) -> CamEngine:
    return CamEngine(lite)


@pytest.fixture(scope="module")
def chelsea() -> Image.Image:
    return Image.fromarray(skdata.chelsea())  # 451 x 300 cat


@pytest.fixture(scope="module")
def coffee() -> Image.Image:
    return Image.fromarray(skdata.coffee())  # 600 x 400 cup


def reference(bundle: ModelBundle, image: Image.Image, method: str, target: int) -> np.ndarray:
    """pytorch-grad-cam's standard path on the full model."""
    x = bundle.preprocess.to_tensor(image).to(bundle.device)
    if method in GRADIENT_METHODS:
        x.requires_grad_(True)  # the bundle's parameters are frozen
    cam = LIBRARY[method](bundle.model, [bundle.cam_layer])
    try:
        return cam(x, [ClassifierOutputTarget(target)])[0]
    finally:
        cam.activations_and_grads.release()


def tiny_bundle(channels: int = 40) -> ModelBundle:
    """A small CNN whose CAM layer (SiLU, so activations go negative) feeds pool + fc."""
    torch.manual_seed(1)
    model = nn.Sequential()
    model.add_module("conv1", nn.Conv2d(3, 8, 3, stride=2, padding=1))
    model.add_module("relu", nn.ReLU())
    model.add_module("conv2", nn.Conv2d(8, channels, 3, stride=2, padding=1))
    model.add_module("act", nn.SiLU())
    model.add_module("pool", nn.AdaptiveAvgPool2d(1))
    model.add_module("flat", nn.Flatten())
    model.add_module("fc", nn.Linear(channels, 5))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return ModelBundle(
        model=model,
        spec=ModelSpec("tiny"),
        preprocess=Preprocess(resize=36, crop=32),
        class_names=[f"c{i}" for i in range(5)],
        classifier_name="fc",
        cam_layer_name="act",
        weights_fingerprint="tiny",
        head=lambda a: model.fc(model.flat(model.pool(a))),
    )


# --------------------------------------------------------------------------------------
# Fast path == standard path


@pytest.mark.parametrize("method", sorted(LIBRARY))
def test_head_path_equals_library_lite(lite, lite_engine, chelsea, coffee, method):
    assert lite_engine.uses_fast_path(method)
    for image, target, key in ((chelsea, None, "chelsea"), (coffee, 281, "coffee")):
        res = lite_engine.compute(image, method, target, key=key)
        ref = reference(lite, image, method, res.target)
        assert res.heatmap.shape == ref.shape == (224, 224)
        assert np.abs(res.heatmap - ref).max() < TOL, (method, target)


def test_head_path_equals_library_resnet(resnet, chelsea):
    engine = CamEngine(resnet)
    for method in sorted(GRADIENT_METHODS):  # EigenCAM: its 2048x2048 SVD is slow; lite has it
        res = engine.compute(chelsea, method, key="chelsea")
        ref = reference(resnet, chelsea, method, res.target)
        assert np.abs(res.heatmap - ref).max() < TOL, method
        assert ref.max() > 0.5, method  # not a degenerate all-zero map


def test_full_path_equals_library(lite, chelsea):
    engine = CamEngine(dataclasses.replace(lite, head=None))
    assert not engine.uses_fast_path("gradcam")
    for method in ("gradcam", "hirescam"):
        res = engine.compute(chelsea, method, 285)
        assert res.target == 285
        assert np.abs(res.heatmap - reference(lite, chelsea, method, 285)).max() < TOL


def test_slow_methods_equal_library_on_tiny_model(chelsea):
    bundle = tiny_bundle()
    engine = CamEngine(bundle)
    engine.batch_size = 16  # 40 channels: three batches, the last one partial
    assert engine.uses_fast_path("ablationcam") and not engine.uses_fast_path("scorecam")
    x = bundle.preprocess.to_tensor(chelsea)
    for method, cls, kwargs in (
        ("ablationcam", AblationCAM, {"ablation_layer": AblationLayer(), "batch_size": 16}),
        ("scorecam", ScoreCAM, {}),
    ):
        seen: list[tuple[int, int]] = []
        res = engine.compute(chelsea, method, 3, progress=lambda d, t, seen=seen: seen.append((d, t)))
        cam = cls(bundle.model, [bundle.module("act")], **kwargs)
        cam.batch_size = 16
        try:
            ref = cam(x, [ClassifierOutputTarget(3)])[0]
        finally:
            cam.activations_and_grads.release()
        assert np.abs(res.heatmap - ref).max() < TOL, method
        assert seen[-1] == (40, 40), method
        # The shared model was never modified (AblationCAM swaps a layer in the model it gets).
        assert isinstance(bundle.model.act, nn.SiLU)


# --------------------------------------------------------------------------------------
# Results


def test_predicted_class_and_probs(lite_engine, chelsea):
    res = lite_engine.compute(chelsea)
    assert isinstance(res, CamResult) and res.method == "gradcam"
    assert 281 <= res.target <= 285  # an ImageNet cat
    assert res.probs.dtype == np.float32 and res.probs.shape == (1000,)
    assert res.target == int(np.argmax(res.probs))
    assert abs(float(res.probs.sum()) - 1.0) < 1e-4
    assert res.seconds > 0


def test_targets_give_different_heatmaps(lite_engine, chelsea):
    cat = lite_engine.compute(chelsea, "gradcam", 281, key="chelsea")
    cup = lite_engine.compute(chelsea, "gradcam", 967, key="chelsea")  # espresso
    assert (cat.target, cup.target) == (281, 967)
    assert np.abs(cat.heatmap - cup.heatmap).max() > 0.1
    np.testing.assert_array_equal(cat.probs, cup.probs)


def test_heatmap_geometry(lite_engine, lite, chelsea):
    res = lite_engine.compute(chelsea, "gradcam")
    w, h = chelsea.size
    heat, orig = res.heatmap, res.heatmap_original
    assert heat.dtype == np.float32 and heat.shape == (224, 224)
    assert heat.min() >= 0 and heat.max() <= 1 and heat.max() > 0.9
    assert orig.dtype == np.float32 and orig.shape == (h, w)
    # The crop window mapped back onto the original: NaN exactly outside it (1 px slack
    # for the nearest-neighbour edge).
    pre = lite.preprocess
    rw, rh = pre.resized_size(w, h)
    left, top, right, bottom = pre.crop_box(w, h)
    x0, x1 = left * w / rw, right * w / rw
    y0, y1 = top * h / rh, bottom * h / rh
    xs, ys = np.arange(w) + 0.5, np.arange(h) + 0.5

    def window(m: float) -> np.ndarray:
        in_x = (xs[None] > x0 + m) & (xs[None] < x1 - m)
        return in_x & (ys[:, None] > y0 + m) & (ys[:, None] < y1 - m)

    inside, outside = window(1.0), ~window(-1.0)
    assert outside.any()  # chelsea is wider than tall: the crop cuts its sides off
    assert np.isfinite(orig[inside]).all()
    assert np.isnan(orig[outside]).all()
    finite = orig[np.isfinite(orig)]
    assert finite.min() >= 0 and finite.max() <= 1


def test_activation_cache(lite):
    engine = CamEngine(lite, activation_cache_size=2)
    calls = []
    handle = lite.model.register_forward_hook(lambda *_: calls.append(1))
    try:
        img = Image.fromarray(skdata.chelsea())
        first = engine.compute(img, "gradcam", key="a")
        again = engine.compute(img, "gradcam++", 300, key="a")
        assert len(calls) == 1  # the target switch reused the cached activation
        np.testing.assert_array_equal(first.probs, again.probs)
        engine.compute(img, "gradcam", key="b")
        engine.compute(img, "gradcam", key="c")  # evicts "a"
        engine.compute(img, "gradcam", key="a")
        assert len(calls) == 4
        engine.compute(img, "gradcam")  # no key: never cached
        engine.compute(img, "gradcam")
        assert len(calls) == 6
    finally:
        handle.remove()


def test_bad_arguments(lite_engine, chelsea):
    with pytest.raises(FeatscopeError):
        lite_engine.compute(chelsea, "nonsense")
    with pytest.raises(FeatscopeError):
        lite_engine.compute(chelsea, "gradcam", 1000)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(CamCancelled):
        lite_engine.compute(chelsea, "gradcam", cancel=cancel)


def test_method_tables():
    assert set(LIBRARY) | SLOW_METHODS <= set(METHODS)
    assert SLOW_METHODS == {"scorecam", "ablationcam"}
    assert all(isinstance(v, str) and v for v in METHODS.values())


# --------------------------------------------------------------------------------------
# Slow methods: progress, cancel, and not blocking fast calls


def small(bundle: ModelBundle) -> ModelBundle:
    """The same network on a 96 px input: ScoreCAM's 1280 masked inputs stay small."""
    return dataclasses.replace(
        bundle, preprocess=Preprocess(resize=110, crop=96, mean=(0.498,) * 3, std=(0.502,) * 3)
    )


def test_cancel_stops_scorecam_with_increasing_progress(lite, chelsea):
    engine = CamEngine(small(lite))
    engine.batch_size = 4
    cancel = threading.Event()
    seen: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        seen.append((done, total))
        if len(seen) >= 4:
            cancel.set()

    with pytest.raises(CamCancelled):
        engine.compute(chelsea, "scorecam", progress=progress, cancel=cancel)
    done = [d for d, _ in seen]
    assert done == sorted(done) and len(set(done)) == len(done) and done[-1] > 0
    assert {t for _, t in seen} == {1280}  # one forward per channel of the CAM layer
    assert len(seen) == 4  # stopped at the next batch


def test_slow_method_does_not_block_fast_calls(lite, chelsea, coffee):
    fast = CamEngine(lite)
    full = CamEngine(dataclasses.replace(lite, head=None))  # hooks the shared model
    slow = CamEngine(small(lite))
    slow.batch_size = 2
    paused, resume, cancel = threading.Event(), threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def progress(done: int, total: int) -> None:
        if done > 0:
            paused.set()
            resume.wait(120)

    def run_slow() -> None:
        try:
            slow.compute(chelsea, "scorecam", progress=progress, cancel=cancel)
        except BaseException as exc:  # noqa: BLE001 - inspected below
            errors.append(exc)

    worker = threading.Thread(target=run_slow, daemon=True)
    worker.start()
    try:
        assert paused.wait(120), "ScoreCAM never reported progress"
        # ScoreCAM is mid-run with its hooks registered; fast calls still go through.
        result = {}
        t = threading.Thread(
            target=lambda: result.update(
                a=fast.compute(coffee, "gradcam"), b=full.compute(coffee, "gradcam")
            ),
            daemon=True,
        )
        t.start()
        t.join(60)
        assert not t.is_alive(), "fast CAM blocked by a running slow method"
        assert np.abs(result["a"].heatmap - result["b"].heatmap).max() < TOL
    finally:
        cancel.set()
        resume.set()
        worker.join(120)
    assert len(errors) == 1 and isinstance(errors[0], CamCancelled)


# --------------------------------------------------------------------------------------
# Concurrency


def test_concurrent_calls_equal_lone_calls(lite, lite_engine, chelsea, coffee):
    full = CamEngine(dataclasses.replace(lite, head=None))
    jobs = [
        (lite_engine, chelsea, "gradcam", None, "chelsea"),
        (lite_engine, coffee, "gradcam++", 281, "coffee"),
        (lite_engine, chelsea, "layercam", 967, None),
        (full, coffee, "hirescam", None, None),
    ]
    alone = [eng.compute(img, m, t, key=k) for eng, img, m, t, k in jobs]
    lite_engine.clear_cache()
    barrier = threading.Barrier(len(jobs))
    results: dict[int, list[CamResult]] = {i: [] for i in range(len(jobs))}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        eng, img, m, t, k = jobs[i]
        try:
            barrier.wait(30)
            for _ in range(3):
                results[i].append(eng.compute(img, m, t, key=k))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    for i, ref in enumerate(alone):
        assert len(results[i]) == 3
        for res in results[i]:
            assert res.target == ref.target
            assert np.abs(res.heatmap - ref.heatmap).max() < TOL, jobs[i][2]
            np.testing.assert_allclose(res.probs, ref.probs, atol=1e-5)


# --------------------------------------------------------------------------------------
# Estimates and display


def test_estimate_seconds():
    bundle = tiny_bundle()  # the estimate times a few forward passes: keep them cheap
    est = {m: estimate_seconds(m, bundle) for m in METHODS}
    assert all(isinstance(v, float) and v > 0 for v in est.values())
    assert est["scorecam"] > est["gradcam"]
    assert estimate_seconds("nonsense", bundle) is None


def test_colorize_and_overlay(chelsea):
    w, h = chelsea.size
    heat = np.tile(np.linspace(0, 1, w, dtype=np.float32), (h, 1))
    heat[:, :10] = np.nan
    rgba = colorize(heat)
    assert rgba.mode == "RGBA" and rgba.size == (w, h)
    arr = np.asarray(rgba)
    assert (arr[:, :10, 3] == 0).all() and (arr[:, 10:, 3] == 255).all()
    assert arr[0, -1, 0] > 120 and arr[0, -1, 1:3].max() < 50  # hot = (dark) red, as in jet
    assert arr[0, 10, 2] > 100 and arr[0, 10, 0] < 50  # cold = blue
    out = overlay(chelsea, heat, alpha=0.4)
    assert out.mode == "RGB" and out.size == (w, h)
    with pytest.raises(ValueError):
        overlay(chelsea, heat[:-1])
