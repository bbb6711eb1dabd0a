"""CAM service (cache, one computation per image, latest wins), background jobs, model loading."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from app_helpers import FakeEngine, fake_cam_module
from featscope.app.cams import CamKey, CamService, ModelHandle, Superseded
from featscope.app.jobs import CANCELLED, DONE, FAILED, JobRegistry
from featscope.errors import FeatscopeError


@pytest.fixture()
def images(tmp_path):
    paths = []
    for i, size in enumerate([(120, 90), (64, 64), (2000, 1500)]):
        p = tmp_path / f"{i}.jpg"
        Image.new("RGB", size, (30 * i, 100, 150)).save(p)
        paths.append(p)
    return paths


def service(images, engine, **kw) -> CamService:
    handle = ModelHandle.ready_with(engine, fake_cam_module())
    return CamService(lambda i: images[i], handle, **kw)


def test_same_request_again_is_cached(images):
    engine = FakeEngine()
    cams = service(images, engine)
    key = CamKey(0, 1, "gradcam")
    first = cams.get(key)
    t0 = time.perf_counter()
    again = cams.get(key)
    assert again is first and time.perf_counter() - t0 < 0.01
    assert len(engine.calls) == 1 and cams.computed == 1
    assert engine.calls[0] == (1, "gradcam", 0)  # target, method, activation-cache key
    heat = Image.open(io.BytesIO(first.heatmap_png))
    assert heat.mode == "RGBA" and heat.size == (120, 90)
    assert Image.open(io.BytesIO(first.overlay_jpeg)).size == (120, 90)


def test_cache_is_bounded_in_bytes(images):
    cams = service(images, FakeEngine(), cache_bytes=1)
    for t in range(3):
        cams.get(CamKey(0, t, "gradcam"))
    assert cams.cached(CamKey(0, 2, "gradcam")) is not None  # the newest stays
    assert cams.cached(CamKey(0, 0, "gradcam")) is None
    assert len(cams._cache) == 1


def test_large_images_get_display_sized_cams_with_the_same_geometry(images):
    item = service(images, FakeEngine()).get(CamKey(2, 0, "gradcam"))
    assert (item.width, item.height) == (1024, 768)
    assert Image.open(io.BytesIO(item.heatmap_png)).size == (1024, 768)


@pytest.mark.parametrize("steps", [1, 6])
def test_one_computation_per_image_and_the_latest_request_wins(images, steps):
    # steps=1: the running CAM cannot stop early; steps=6: it checks its cancel event.
    engine = FakeEngine(delay=0.6, steps=steps)
    cams = service(images, engine)
    results: dict[int, object] = {}

    def ask(target):
        try:
            results[target] = cams.get(CamKey(0, target, "gradcam"))
        except Superseded:
            results[target] = "superseded"

    first = threading.Thread(target=ask, args=(0,))
    first.start()
    time.sleep(0.15)  # the first one is computing
    later = [threading.Thread(target=ask, args=(t,)) for t in (1, 2)]
    for t in later:
        t.start()
        time.sleep(0.05)
    for t in [first, *later]:
        t.join(10)
    assert engine.max_running == 1  # never two computations of one image at once
    assert results[0] == "superseded"  # cancelled when a newer request came
    assert results[1] == "superseded"  # stale: never finished
    assert results[2] is not None and results[2] != "superseded"
    assert cams.computed == 1  # only the latest request's CAM was finished and cached
    assert engine.calls[-1][0] == 2
    if steps == 1:
        assert [c[0] for c in engine.calls] == [0, 2]  # the queued stale one never started
    assert cams.cached(CamKey(0, 2, "gradcam")) is not None
    assert cams.cached(CamKey(0, 1, "gradcam")) is None


def test_different_images_compute_in_parallel(images):
    engine = FakeEngine(delay=0.4, steps=4)
    cams = service(images, engine)
    threads = [threading.Thread(target=cams.get, args=(CamKey(i, 0, "gradcam"),))
               for i in (0, 1)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert engine.max_running == 2
    assert time.perf_counter() - t0 < 0.75


def test_job_reports_progress_fills_the_cache_and_is_deduplicated(images):
    engine = FakeEngine(delay=0.5, steps=5)
    cams = service(images, engine)
    jobs = JobRegistry()
    key = CamKey(1, 0, "scorecam")
    job = jobs.start(key, cams.job(key), group=1)
    assert jobs.start(key, cams.job(key), group=1) is job  # asking again: the same job
    time.sleep(0.25)
    assert job.active and 0 < job.done < job.total == 5
    assert 0 < job.fraction < 1
    assert job.wait(10) and job.state == DONE and job.fraction == 1.0
    assert cams.cached(key) is job.result
    assert len(engine.calls) == 1


def test_job_can_be_cancelled_and_latest_job_per_image_wins(images):
    engine = FakeEngine(delay=2.0, steps=40)
    cams = service(images, engine)
    jobs = JobRegistry()
    a, b = CamKey(0, 0, "scorecam"), CamKey(0, 1, "scorecam")
    ja = jobs.start(a, cams.job(a), group=0)
    time.sleep(0.1)
    jb = jobs.start(b, cams.job(b), group=0)  # same image: the older job is stale
    assert ja.wait(5) and ja.state == CANCELLED
    assert jb.active
    assert jobs.cancel(b)
    assert jb.wait(5) and jb.state == CANCELLED
    assert cams.cached(a) is None and cams.cached(b) is None
    # A cancelled job can be started again.
    assert jobs.start(b, lambda progress, cancel: "ok").wait(5)
    assert jobs.get(b).state == DONE


def test_failed_job_keeps_its_error():
    jobs = JobRegistry()

    def boom(progress, cancel):
        raise RuntimeError("out of memory")

    job = jobs.start("k", boom)
    assert job.wait(5) and job.state == FAILED and "out of memory" in job.error


def test_job_registry_keeps_a_bounded_history():
    jobs = JobRegistry(keep_finished=3)
    for i in range(10):
        jobs.start(i, lambda p, c: None).wait(5)
    jobs.start("last", lambda p, c: None).wait(5)
    assert len(jobs._jobs) <= 4


def test_model_loads_in_the_background():
    gate = threading.Event()

    def factory(module):
        gate.wait(5)
        return "engine"

    handle = ModelHandle(factory, module_loader=fake_cam_module)
    t0 = time.perf_counter()
    handle.start()
    assert time.perf_counter() - t0 < 0.1  # start() returns at once
    assert handle.status == "loading"
    assert handle.module(timeout=5).METHODS  # the method list is there before the model
    with pytest.raises(FeatscopeError, match="still loading"):
        handle.get(timeout=0.05)
    gate.set()
    assert handle.get(timeout=5) == "engine" and handle.status == "ready"


def test_model_failure_is_reported_not_raised_at_start():
    def factory(module):
        raise FeatscopeError("weights file missing")

    handle = ModelHandle(factory, module_loader=fake_cam_module).start()
    with pytest.raises(FeatscopeError, match="weights file missing"):
        handle.get(timeout=5)
    assert handle.status == "failed" and "weights file missing" in handle.error


def test_overlay_lines_up_with_the_original(images):
    """The heatmap is mapped to the original's pixels: NaN columns stay transparent."""
    item = service(images, FakeEngine()).get(CamKey(0, 0, "gradcam"))
    rgba = np.asarray(Image.open(io.BytesIO(item.heatmap_png)))
    assert (rgba[:, :10, 3] == 0).all()  # FakeEngine leaves the left 10 % unseen
    assert (rgba[:, 15:, 3] == 255).all()
