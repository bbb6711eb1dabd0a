"""Image endpoints through Flask's test client: ids only, 404 for everything else, caching."""

from __future__ import annotations

import io
import json
from urllib.parse import quote

import numpy as np
import pytest
from PIL import Image

from app_helpers import EVIL, FakeEngine, json_dicts, make_app, make_run

N = 12


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    run_dir = make_run(tmp_path_factory.mktemp("routes"), n=N)
    app, engine = make_app(run_dir, FakeEngine())
    return app, engine, run_dir


@pytest.fixture()
def client(served):
    return served[0].server.test_client()


BAD_IDS = [
    "../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2e%2e%2f", "%2e%2e%2fetc%2fpasswd",
    "..", "-1", str(N), "99999999999999999999", "abc", "1.0", "1e2", "01", "0x1", " 1",
    "1%00", "%00", "1/", "1/../2", "/etc/passwd", "%2Fetc%2Fpasswd", "C:%5Cwindows",
]


@pytest.mark.parametrize("endpoint", ["image", "thumb", "cam"])
@pytest.mark.parametrize("raw", BAD_IDS)
def test_ids_outside_the_index_are_404(client, endpoint, raw):
    resp = client.get(f"/{endpoint}/{raw}")
    assert resp.status_code == 404, (endpoint, raw, resp.status_code)
    assert b"root:" not in resp.data


def test_unknown_paths_are_404_not_the_app_page(client):
    for path in ("/etc/passwd", "/../../etc/passwd", "/image", "/thumbs/x.jpg", "/run.json",
                 "/data-test/table.parquet"):
        assert client.get(path).status_code == 404, path
    page = client.get("/")
    assert page.status_code == 200 and b"featscope" in page.data


def test_image_serves_the_file_of_that_id(client, served):
    app = served[0]
    ctx = app.featscope
    for image_id in (0, 3, N - 1):
        resp = client.get(f"/image/{image_id}")
        assert resp.status_code == 200
        assert resp.mimetype in ("image/jpeg", "image/png")
        assert resp.data == ctx.image_path(image_id).read_bytes()
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


def test_thumbnail_is_made_once_and_cached_in_the_run(client, served, monkeypatch):
    app, _, run_dir = served
    ctx = app.featscope
    calls = []
    real = ctx.thumbs.loader
    monkeypatch.setattr(ctx.thumbs, "loader", lambda p: calls.append(p) or real(p))
    first = client.get("/thumb/2")
    assert first.status_code == 200 and first.mimetype == "image/jpeg"
    img = Image.open(io.BytesIO(first.data))
    assert max(img.size) <= 128
    cached = run_dir / "thumbs" / f"{ctx.content_hash(2)}.jpg"
    assert cached.exists() and cached.read_bytes() == first.data
    mtime = cached.stat().st_mtime_ns
    second = client.get("/thumb/2")
    assert second.data == first.data
    assert len(calls) == 1  # the second request read the cached file
    assert cached.stat().st_mtime_ns == mtime
    assert not list((run_dir / "thumbs").glob("*.tmp"))  # atomic write left nothing behind


def test_thumbnail_cache_name_cannot_escape(tmp_path):
    from featscope.app.thumbs import ThumbCache, cache_name

    assert cache_name("../../etc/passwd", "x") != "../../etc/passwd"
    assert "/" not in cache_name("../../etc/passwd", "x")
    tc = ThumbCache(tmp_path)
    assert tc.path_for("../../x", "y").parent == tmp_path / "thumbs"


def png(resp) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(resp.data)))


def test_cam_kinds_classes_and_cache(client, served):
    app, engine, _ = served
    ctx = app.featscope
    before = len(engine.calls)
    heat = client.get("/cam/3?cls=1&method=gradcam&kind=heatmap")
    over = client.get("/cam/3?cls=1&method=gradcam&kind=overlay")
    assert heat.status_code == 200 and heat.mimetype == "image/png"
    assert over.status_code == 200 and over.mimetype == "image/jpeg"
    h, o = png(heat), png(over)
    w, hh = Image.open(ctx.image_path(3)).size
    assert h.shape[:2] == (hh, w) and o.shape[:2] == (hh, w)  # the original's geometry
    assert h.shape[2] == 4 and (h[..., 3] == 0).any()  # transparent where not seen
    assert len(engine.calls) == before + 1  # the second kind came from the cache
    other = client.get("/cam/3?cls=2&method=gradcam&kind=heatmap")
    assert not np.array_equal(png(other), h)  # another class, another map
    default = client.get("/cam/3?kind=heatmap")  # no cls: the predicted class
    pred = int(ctx.table["pred_index"].iat[3])
    assert default.data == client.get(f"/cam/3?cls={pred}&kind=heatmap").data
    plus = client.get("/cam/3?cls=1&method=" + quote("gradcam++") + "&kind=heatmap")
    assert plus.status_code == 200 and engine.calls[-1][1] == "gradcam++"


@pytest.mark.parametrize("query,status", [
    ("cls=99&kind=heatmap", 404), ("cls=-1&kind=heatmap", 404), ("cls=a&kind=heatmap", 404),
    ("cls=1&method=nope&kind=heatmap", 404), ("cls=1&method=../x&kind=heatmap", 404),
    ("cls=1&kind=svg", 400),
])
def test_cam_rejects_bad_parameters(client, query, status):
    assert client.get(f"/cam/1?{query}").status_code == status


def test_slow_cam_is_not_computed_by_a_plain_request(client, served):
    engine = served[1]
    before = len(engine.calls)
    resp = client.get("/cam/4?cls=0&method=scorecam&kind=heatmap")
    assert resp.status_code == 409
    assert len(engine.calls) == before


def test_page_shows_html_names_as_text(client):
    layout = client.get("/_dash-layout").get_data(as_text=True)
    assert "dangerously_allow_html" not in layout
    deps = client.get("/_dash-dependencies").get_data(as_text=True)
    assert "dangerously_allow_html" not in deps
    # The class name with markup is in the layout as a JSON string (a text child).
    text = json.loads(layout)
    children = [d["children"] for d in json_dicts(text) if isinstance(d.get("children"), str)]
    assert EVIL in children  # as a legend entry's text


def test_image_of_unreadable_file_is_404(tmp_path):
    run_dir = make_run(tmp_path, n=4)
    app, _ = make_app(run_dir)
    path = app.featscope.image_path(2)
    path.write_bytes(b"not an image")
    client = app.server.test_client()
    assert client.get("/thumb/2").status_code == 404
    path.unlink()
    assert client.get("/image/2").status_code == 404


def test_formats_a_browser_cannot_show_are_converted(tmp_path):
    run_dir = make_run(tmp_path, n=4)
    app, _ = make_app(run_dir)
    path = app.featscope.image_path(1)
    arr = (np.linspace(0, 65535, 90 * 120).reshape(90, 120)).astype(np.uint16)
    Image.fromarray(arr).save(path, format="TIFF")  # 16-bit TIFF under a .jpg name
    resp = app.server.test_client().get("/image/1")
    assert resp.status_code == 200 and resp.mimetype == "image/jpeg"
    img = Image.open(io.BytesIO(resp.data))
    assert img.format == "JPEG" and img.size == (120, 90)
    assert list((run_dir / "thumbs").glob("*_display.jpg"))  # converted once, cached
