"""The real app in real headless Chromium: waitress serving a real efficientnet-lite0 run.

Run alone with ``pytest -m browser``. Chromium is Debian's (/usr/bin/chromium); Playwright's
own browsers are not downloaded.
"""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser

SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "screenshot.png"
GD = "document.querySelector('#map .js-plotly-plot')"


@pytest.fixture(scope="module")
def server(lite_run):
    """waitress on a free loopback port, serving the run; the model loads in the background
    exactly as with ``featscope serve``."""
    from featscope.app.server import BackgroundServer

    srv = BackgroundServer.start(lite_run.path, "127.0.0.1", 0, device="cpu")
    yield srv.url, srv.app.featscope
    srv.stop()
    assert not srv.thread.is_alive()


@pytest.fixture()
def page(browser):
    ctx = browser.new_context(viewport={"width": 1440, "height": 900})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.errors = errors
    yield pg
    ctx.close()
    assert not errors, errors  # no JavaScript or callback errors during the test


def open_map(page, url: str) -> None:
    page.goto(url)
    page.wait_for_function(
        f"() => {{ const g = {GD}; return g && g._fullData && g._fullData.length >= 2 }}",
        timeout=60_000,
    )


def point_xy(page, image_id: int) -> tuple[float, float]:
    """Page pixel position of an image's point, from the plot's axes."""
    pos = page.evaluate(
        f"""(i) => {{
            const g = {GD}, L = g._fullLayout, t = g._fullData[0];
            const j = Array.from(t.customdata).indexOf(i);
            const r = g.getBoundingClientRect();
            return [r.left + L.xaxis._offset + L.xaxis.l2p(t.x[j]),
                    r.top + L.yaxis._offset + L.yaxis.l2p(t.y[j])];
        }}""",
        image_id,
    )
    return pos[0], pos[1]


def isolated_point(page, among: list[int] | None = None) -> int:
    """The image id (of ``among``, default all) whose point is farthest from any other, so
    that hovering and clicking it cannot hit a neighbour."""
    return page.evaluate(
        f"""(among) => {{
            const g = {GD}, L = g._fullLayout, t = g._fullData[0];
            const px = Array.from(t.x, v => L.xaxis.l2p(v));
            const py = Array.from(t.y, v => L.yaxis.l2p(v));
            let best = 0, bestD = -1;
            for (let i = 0; i < px.length; i++) {{
                if (among && !among.includes(Number(t.customdata[i]))) continue;
                let d = Infinity;
                for (let j = 0; j < px.length; j++) if (j !== i)
                    d = Math.min(d, Math.hypot(px[i] - px[j], py[i] - py[j]));
                if (d > bestD) {{ bestD = d; best = i; }}
            }}
            return Number(t.customdata[best]);
        }}""",
        among,
    )


def fetch_image(page, selector: str) -> tuple[str, np.ndarray]:
    """(src, decoded pixels) of an <img> once it has loaded; the bytes are fetched again
    through the page, as the browser got them."""
    page.wait_for_function(
        "(s) => { const i = document.querySelector(s);"
        " return i && i.getAttribute('src') && i.complete && i.naturalWidth > 0 }",
        arg=selector, timeout=120_000,
    )
    src, b64 = page.evaluate(
        """async (s) => {
            const src = document.querySelector(s).src;
            const buf = new Uint8Array(await (await fetch(src)).arrayBuffer());
            let bin = ''; for (const b of buf) bin += String.fromCharCode(b);
            return [src, btoa(bin)];
        }""",
        selector,
    )
    img = Image.open(io.BytesIO(base64.b64decode(b64)))
    img.load()
    return src, np.asarray(img.convert("RGB"))


def hover(page, image_id: int) -> None:
    """Move onto a point (jumping there, so the path crosses no other point) and wait for
    its tooltip."""
    x, y = point_xy(page, image_id)
    page.mouse.move(x, y)
    page.mouse.move(x + 1, y)
    page.wait_for_function(
        "(id) => { const i = document.querySelector('#tip img.tip-thumb');"
        " return i && i.src.includes('/thumb/' + id + '?') }",
        arg=image_id, timeout=30_000,
    )


ACTIVE_CLASS_JS = "() => JSON.parse(document.querySelector('.top5-row.active').id).index"


def marker_colors(page) -> list[float]:
    return page.evaluate(f"() => Array.from({GD}._fullData[0].marker.color)")


def test_map_renders_every_point_from_typed_arrays(page, server, lite_run):
    url, _ = server
    open_map(page, url)
    info = page.evaluate(
        f"""() => {{ const g = {GD}; const t = g._fullData[0];
            return {{n: t.x.length, type: t.type, ids: Array.from(t.customdata),
                     wire: typeof g.data[0].x.bdata, hover: t.hoverinfo}} }}"""
    )
    assert info["type"] == "scattergl"
    assert info["n"] == len(lite_run.table) == 30
    assert sorted(info["ids"]) == list(range(30))
    assert info["wire"] == "string"  # x arrived as a base64 typed array
    assert info["hover"] == "none"
    assert page.locator(".legend-row").count() == 3  # cat, coffee, rocket


def test_hover_shows_the_thumbnail_tooltip(page, server, lite_run):
    url, _ = server
    open_map(page, url)
    image_id = isolated_point(page)
    hover(page, image_id)
    src, thumb = fetch_image(page, "#tip img.tip-thumb")
    assert f"/thumb/{image_id}" in src
    assert max(thumb.shape[:2]) <= 128
    text = page.inner_text("#tip")
    row = lite_run.table.iloc[image_id]
    assert row["name"] in text and row["pred"] in text and str(row["label"]) in text
    assert "%" in text


def test_click_explains_the_prediction_and_switching_class_changes_the_cam(page, server,
                                                                           lite_run):
    url, ctx = server
    open_map(page, url)
    page.evaluate("() => { window.__noReload = 1; }")
    cats = [int(i) for i in np.flatnonzero(lite_run.table["label"] == "cat")]
    image_id = isolated_point(page, cats)
    # plotly clicks the point it hovers: let the hover land first, as a user's would.
    hover(page, image_id)
    x, y = point_xy(page, image_id)
    t0 = time.perf_counter()
    page.mouse.click(x + 1, y)
    orig_src, original = fetch_image(page, "#img-original")
    heat_src, heat = fetch_image(page, "#img-heatmap")
    latency = time.perf_counter() - t0
    print(f"\nclick -> CAM shown: {latency:.2f} s (includes waiting for the model to load)")

    row = lite_run.table.iloc[image_id]
    assert f"/image/{image_id}" in orig_src and f"/cam/{image_id}" in heat_src
    assert f"cls={int(row['pred_index'])}" in heat_src  # the predicted class by default
    assert original.shape[:2] == (int(row["height"]), int(row["width"]))
    assert heat.shape[:2] == original.shape[:2]  # mapped back onto the original geometry
    assert not np.array_equal(heat, original)
    assert page.inner_text(".detail-name") == row["name"]
    assert f"{row['width']} × {row['height']} px" in page.inner_text(".detail-meta")
    assert page.locator(".top5-row").count() == 3  # a 3-class model: all of them
    _, overlay = fetch_image(page, "#img-overlay-heat")
    assert f"?id={image_id}" in page.url

    # The ring marks the clicked point.
    ring = page.evaluate(f"() => Array.from({GD}._fullData[1].x)")
    assert ring == [pytest.approx(float(row["x"]), rel=1e-5)]

    page.mouse.move(5, 450)  # no tooltip in the picture
    page.wait_for_timeout(500)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))
    assert Image.open(SCREENSHOT).size == (1440, 900)

    # "Why not ...?": another class gives another heatmap.
    other = page.locator(".top5-row:not(.active)").first
    other.click()
    page.wait_for_function(
        "(old) => { const i = document.querySelector('#img-heatmap');"
        " return i.getAttribute('src') && !i.src.endsWith(old) }",
        arg=heat_src.split("/", 3)[-1], timeout=60_000,
    )
    new_src, new_heat = fetch_image(page, "#img-heatmap")
    assert new_src != heat_src and "cls=" in new_src
    assert not np.array_equal(new_heat, heat)
    assert "cls=" in page.url

    # Overlay opacity is CSS on the client.
    assert float(page.eval_on_selector("#img-overlay-heat", "e => e.style.opacity")) > 0
    assert page.evaluate("() => window.__noReload") == 1
    # The explained class is the one marked in the top-5 list.
    page.wait_for_selector(".top5-row.active", timeout=10_000)
    assert page.locator(".top5-row.active").count() == 1
    active = page.evaluate(ACTIVE_CLASS_JS)
    assert f"cls={active}&" in new_src


def test_colour_mode_recolours_without_reloading(page, server):
    url, _ = server
    open_map(page, url)
    page.evaluate("() => { window.__marker = 'kept'; }")
    before = marker_colors(page)
    page.locator("#color-mode").get_by_text("Confidence", exact=True).click()
    page.wait_for_function(
        f"(b) => JSON.stringify(Array.from({GD}._fullData[0].marker.color)) !== JSON.stringify(b)",
        arg=before, timeout=20_000,
    )
    after = marker_colors(page)
    assert after != before and len(after) == len(before)
    assert page.evaluate("() => window.__marker") == "kept"  # same page, no reload
    assert page.evaluate(f"() => {GD}._fullData[0].marker.showscale") is True
    # Legend clicks hide a class: its points get the transparent code.
    page.locator("#color-mode").get_by_text("True label", exact=True).click()
    page.wait_for_function(f"() => !{GD}._fullData[0].marker.showscale", timeout=20_000)
    shown = marker_colors(page)
    page.locator(".legend-row").first.click()
    page.wait_for_function(
        f"(b) => JSON.stringify(Array.from({GD}._fullData[0].marker.color)) !== JSON.stringify(b)",
        arg=shown, timeout=20_000,
    )
    assert page.locator(".legend-row.off").count() == 1
    assert max(marker_colors(page)) == 3  # code 3 = hidden (3 classes)


def test_link_reopens_the_same_view(page, server, lite_run):
    url, _ = server
    image_id = 7
    open_map(page, f"{url}/?id={image_id}")
    page.wait_for_selector(".detail-name", timeout=60_000)
    assert page.inner_text(".detail-name") == lite_run.table.iloc[image_id]["name"]
    fetch_image(page, "#img-heatmap")
    assert f"id={image_id}" in page.url


def test_slow_method_warns_then_runs_in_the_background_and_cancels(page, server, monkeypatch):
    import featscope.cam as cam

    # Each Score-CAM batch takes at least 0.5 s more, so the job surely outlasts the checks
    # below (a quiet machine otherwise finishes it before the Cancel click).
    forward = cam._Progress.forward

    def slow_forward(self, x):
        time.sleep(0.5)
        return forward(self, x)

    monkeypatch.setattr(cam._Progress, "forward", slow_forward)
    url, ctx = server
    open_map(page, f"{url}/?id=3")
    fetch_image(page, "#img-heatmap")
    page.click("#cam-method")
    page.get_by_role("option", name="Score-CAM (slow)").click()
    page.wait_for_selector("#cam-slow:not(.hidden)", timeout=60_000)
    assert "slow" in page.inner_text("#cam-slow-text")
    assert "about" in page.inner_text("#cam-slow-text")  # cam.estimate_seconds
    page.click("#cam-start")
    page.wait_for_function(
        "() => parseFloat(document.querySelector('#cam-progress').value) > 0", timeout=120_000
    )
    # The rest of the app keeps working meanwhile: the map still recolours.
    before = marker_colors(page)
    page.locator("#color-mode").get_by_text("Confidence", exact=True).click()
    page.wait_for_function(
        f"(b) => JSON.stringify(Array.from({GD}._fullData[0].marker.color)) !== JSON.stringify(b)",
        arg=before, timeout=20_000,
    )
    page.click("#cam-cancel")
    page.wait_for_function(
        "() => document.querySelector('#cam-status').innerText.includes('cancelled')",
        timeout=60_000,
    )
    assert not ctx.jobs.active()


@pytest.fixture(scope="module")
def big_server(tmp_path_factory):
    """100,000 synthetic points (a stand-in CAM engine: this is about the map)."""
    from app_helpers import make_big_run, serving

    with serving(make_big_run(tmp_path_factory.mktemp("big"), n=100_000)) as (url, _):
        yield url


def test_100k_points_arrive_once_compactly_and_recolour_quickly(page, big_server):
    sizes: dict[str, list[int]] = {"layout": [], "update": []}

    def on_response(resp):
        try:
            if resp.url.endswith("/_dash-layout"):
                sizes["layout"].append(len(resp.body()))
            elif "/_dash-update-component" in resp.url and resp.status == 200:
                body = resp.body()
                if b'"marker"' in body:
                    sizes["update"].append(len(body))
        except Exception:  # noqa: BLE001 - the page closed while a body was read
            pass

    page.on("response", on_response)
    t0 = time.perf_counter()
    open_map(page, big_server)
    first_paint = time.perf_counter() - t0
    n = page.evaluate(f"() => {GD}._fullData[0].x.length")
    assert n == 100_000
    per_point = sizes["layout"][0] / n
    print(f"\n100k points: first paint {first_paint:.1f} s, map payload {per_point:.1f} B/point")
    assert per_point <= 40
    assert page.evaluate(f"() => {GD}._fullData[0].marker.symbol.length") == n

    sizes["update"].clear()
    # Timed inside the page: click the radio, wait (per frame) until plotly's colours change.
    recolour = page.evaluate(
        f"""async () => {{
            const g = {GD}, before = Array.from(g._fullData[0].marker.color.slice(0, 2000));
            const radio = [...document.querySelectorAll('#color-mode label')]
                .find(l => l.innerText.trim() === 'Predicted label');
            const t = performance.now();
            radio.click();
            await new Promise((resolve, reject) => {{
                const stop = t + 30000;
                (function poll() {{
                    const c = g._fullData[0].marker.color;
                    if (before.some((v, i) => v !== c[i])) return resolve();
                    if (performance.now() > stop) return reject(new Error('no recolour'));
                    requestAnimationFrame(poll);
                }})();
            }});
            return (performance.now() - t) / 1000;
        }}"""
    )
    for _ in range(50):  # response events reach Python a little after the page saw them
        if sizes["update"]:
            break
        page.wait_for_timeout(100)
    update = max(sizes["update"])
    print(f"recolour {recolour:.2f} s, update payload {update / n:.2f} B/point")
    assert update / n < 3  # the codes only: the figure is not sent again
    assert recolour < 10
    assert sizes["layout"] == [sizes["layout"][0]]  # the map data came once

    # Hover still finds points among 100k and shows their tooltip.
    image_id = isolated_point(page, list(range(0, 200)))
    hover(page, image_id)
    assert f"img_{image_id}.jpg" in page.inner_text("#tip")


@pytest.fixture(scope="module")
def evil_server(tmp_path_factory):
    """A hand-made run whose file names and class names carry HTML."""
    from app_helpers import make_run, serving

    with serving(make_run(tmp_path_factory.mktemp("evil"), n=12)) as (url, _):
        yield url


def test_html_in_names_and_labels_is_shown_as_text(page, evil_server):
    """File names, labels and class names with markup appear literally; nothing runs."""
    from app_helpers import EVIL

    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    open_map(page, evil_server + "/?id=1")  # image 1's file name carries the markup
    page.wait_for_selector(".detail-name", timeout=30_000)
    assert EVIL in page.inner_text(".detail-name")
    assert EVIL in page.inner_text("#legend")  # a class name with markup
    hover(page, 1)
    assert EVIL in page.inner_text("#tip")
    assert page.evaluate("() => document.querySelectorAll('img[src=\"x\"]').length") == 0
    assert dialogs == []
