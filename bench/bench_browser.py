"""P5: the map in headless Chromium, a large run against a 1,000-point run, side by side.

* bytes sent to the browser for the map: the Dash responses (``/_dash-layout``,
  ``/_dash-update-component``) that carry the scatter trace, per point (bar: <= 40 B);
* time from navigation to the WebGL scatter having drawn every point, measured inside the
  page (``performance.now()`` counts from the navigation), median of interleaved loads, each
  in a fresh browser context (nothing cached); the ratio large / 1k (bar: <= 2x);
* the bytes a colour-mode change and a hover bring: the figure must not be sent again (bars:
  a quarter and a hundredth of the figure's bytes, and no response carrying the trace).

Runs use synthetic points (tests/app_helpers.make_big_run) and a stand-in CAM engine: this is
about the map, not the model. Chromium is Debian's (/usr/bin/chromium), as in the browser tests.
"""

from __future__ import annotations

import io
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import Row, interleaved
from helpers import CHROMIUM  # tests/ is on the path via common
from helpers import CHROMIUM_ARGS as ARGS

SMALL = 1_000
DASH_DATA = ("/_dash-layout", "/_dash-update-component")
GD = "document.querySelector('#map .js-plotly-plot')"

# Installed before any page script. Each animation frame it looks for the trace with all N
# points and the WebGL scene plotly draws it with: scattergl builds ``scatter2d`` and calls
# ``scene.draw()`` in one synchronous step, so once it exists the points have been drawn; the
# time is taken one frame later, when that frame has been presented.
PAINT_PROBE = """
(() => {
  const N = __N__;
  const full = (g) => g && g._fullData && g._fullData.find(t => t.x && t.x.length === N);
  const drawn = (g) => {
    const t = full(g);
    if (!t || !g._fullLayout || !g._fullLayout._plots) return false;
    return Object.values(g._fullLayout._plots).some(p => p._scene && p._scene.scatter2d);
  };
  const poll = () => {
    const g = document.querySelector('#map .js-plotly-plot');
    if (g && g.on && !g.__fsHooked) {
      g.__fsHooked = true;
      g.on('plotly_afterplot', () => { window.__fsAfterplot = performance.now(); });
    }
    if (drawn(g)) {
      window.__fsDrawn = performance.now();
      requestAnimationFrame(() => { window.__fsPainted = performance.now(); });
      return;
    }
    requestAnimationFrame(poll);
  };
  requestAnimationFrame(poll);
})();
"""


@dataclass
class Traffic:
    """Responses seen by one page: (url, bytes, carries the scatter trace)."""

    items: list[tuple[str, int, bool]] = field(default_factory=list)
    inflight: int = 0
    last: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, page: Any) -> None:
        page.on("request", self._started)
        page.on("requestfinished", self._finished)
        page.on("requestfailed", self._failed)

    def _started(self, _req: Any) -> None:
        with self.lock:
            self.inflight += 1
            self.last = time.monotonic()

    def _failed(self, _req: Any) -> None:
        with self.lock:
            self.inflight -= 1
            self.last = time.monotonic()

    def _finished(self, req: Any) -> None:
        try:
            if any(p in req.url for p in DASH_DATA):
                body = req.response().body()  # Dash JSON (the app sends it uncompressed)
                entry = (req.url, len(body), b'"scattergl"' in body)
            else:
                entry = (req.url, int(req.sizes()["responseBodySize"]), False)
        except Exception:  # noqa: BLE001 - the page closed while a body was read
            entry = (req.url, 0, False)
        with self.lock:
            self.items.append(entry)
            self.inflight -= 1
            self.last = time.monotonic()

    def settle(self, page: Any, quiet: float = 0.5, limit: float = 20.0) -> None:
        """Wait until no request is in flight and none finished for ``quiet`` s."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            page.wait_for_timeout(100)  # lets playwright deliver the pending events
            with self.lock:
                if self.inflight <= 0 and time.monotonic() - self.last >= quiet:
                    return
        raise TimeoutError("the page kept loading")

    def take(self) -> list[tuple[str, int, bool]]:
        with self.lock:
            items, self.items = self.items, []
        return items


@dataclass
class Load:
    painted_s: float
    figure_bytes: int  # Dash responses carrying the scatter trace
    dash_bytes: int  # every Dash JSON response up to the settled first view
    all_bytes: int  # everything, scripts included
    figure_responses: int


def open_map(browser: Any, url: str, n: int, keep: bool = False) -> tuple[Load, Any, Traffic]:
    """One cold load (fresh context, empty cache) of the app; the page is closed unless
    ``keep``."""
    ctx = browser.new_context(viewport={"width": 1440, "height": 900})
    page = ctx.new_page()
    page.add_init_script(PAINT_PROBE.replace("__N__", str(int(n))))
    traffic = Traffic()
    traffic.attach(page)
    page.goto(url, wait_until="commit")
    page.wait_for_function("() => window.__fsPainted !== undefined", timeout=180_000,
                           polling=50)
    painted = page.evaluate("() => window.__fsPainted") / 1000.0
    traffic.settle(page)
    items = traffic.take()
    figure = [b for u, b, fig in items if fig]
    load = Load(painted, sum(figure), sum(b for u, b, _ in items if any(p in u for p in DASH_DATA)),
                sum(b for _, b, _ in items), len(figure))
    if not keep:
        ctx.close()
        return load, None, traffic
    return load, page, traffic


def drawn_pixels(page: Any) -> int:
    """Pixels of the plot area that differ from its background (the points WebGL drew)."""
    import numpy as np
    from PIL import Image

    png = page.locator("#map .js-plotly-plot").screenshot()
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    bg = np.median(img.reshape(-1, 3), axis=0)
    return int((np.abs(img - bg).sum(axis=-1) > 60).sum())


def interactions(page: Any, traffic: Traffic, n: int) -> dict[str, int]:
    """Bytes brought by a colour-mode change and by a hover, once the first view settled."""
    before = page.evaluate(f"() => Array.from({GD}._fullData[0].marker.color.slice(0, 5000))")
    label = page.locator("#color-mode label").filter(has=page.locator("input:not(:checked)"))
    label.first.click()
    page.wait_for_function(
        f"""(b) => {{ const c = {GD}._fullData[0].marker.color;
                     return b.some((v, i) => v !== c[i]); }}""",
        arg=before, timeout=60_000,
    )
    traffic.settle(page)
    colour = traffic.take()
    # Hover a point: jump onto it (so the path crosses no other point) and wait for the tooltip.
    x, y = page.evaluate(
        f"""() => {{ const g = {GD}, L = g._fullLayout, t = g._fullData[0];
            const r = g.getBoundingClientRect();
            return [r.left + L.xaxis._offset + L.xaxis.l2p(t.x[0]),
                    r.top + L.yaxis._offset + L.yaxis.l2p(t.y[0])]; }}"""
    )
    page.mouse.move(x, y)
    page.mouse.move(x + 1, y)
    page.wait_for_function(
        "() => { const i = document.querySelector('#tip img.tip-thumb');"
        " return i && i.complete && i.naturalWidth > 0 }", timeout=60_000,
    )
    traffic.settle(page)
    hover = traffic.take()
    return {
        "colour": sum(b for _, b, _ in colour),
        "colour_figure": sum(1 for *_, fig in colour if fig),
        "colour_requests": len(colour),
        "hover": sum(b for _, b, _ in hover),
        "hover_figure": sum(1 for *_, fig in hover if fig),
        "hover_requests": len(hover),
    }


# Armed before a drag-zoom: from mouse-up (seen first, in the capture phase) until the axis
# range has changed and two animation frames come less than 50 ms apart (the page responds).
ZOOM_PROBE = """() => { window.__fsUp = null; window.__fsIdle = null;
  const g = __GD__, w0 = g._fullLayout.xaxis.range[1] - g._fullLayout.xaxis.range[0];
  window.addEventListener('mouseup', () => { window.__fsUp = performance.now();
    let last = performance.now();
    const tick = () => { const now = performance.now(), r = g._fullLayout.xaxis.range;
      if (Math.abs(r[1] - r[0] - w0) > 1e-9 * w0 && now - last < 50) {
        window.__fsIdle = now; return; }
      last = now; requestAnimationFrame(tick); };
    requestAnimationFrame(tick); }, {once: true, capture: true}); }""".replace("__GD__", GD)


def zoom_seconds(page: Any, repeats: int) -> list[float]:
    """Drag-zoom into the middle of the map, then double-click back out; seconds per zoom."""
    out = []
    for _ in range(repeats):
        left, top, w, h = page.evaluate(
            f"""() => {{ const g = {GD}, L = g._fullLayout, r = g.getBoundingClientRect();
                return [r.left + L.xaxis._offset, r.top + L.yaxis._offset, L.xaxis._length,
                        L.yaxis._length]; }}""")
        page.evaluate(ZOOM_PROBE)
        page.mouse.move(left + 0.3 * w, top + 0.3 * h)
        page.mouse.down()
        page.mouse.move(left + 0.7 * w, top + 0.7 * h, steps=4)
        page.mouse.up()
        page.wait_for_function("() => window.__fsIdle !== null", timeout=60_000)
        out.append(page.evaluate("() => (window.__fsIdle - window.__fsUp) / 1000"))
        full = page.evaluate(f"() => {GD}._fullLayout.xaxis.range[1] - "
                             f"{GD}._fullLayout.xaxis.range[0]") / 0.4
        page.mouse.dblclick(left + 0.5 * w, top + 0.5 * h)
        page.wait_for_function(
            f"(w) => {{ const r = {GD}._fullLayout.xaxis.range; return r[1] - r[0] > 0.9 * w; }}",
            arg=full, timeout=60_000)
        page.wait_for_timeout(500)
    return out


def run(quick: bool = False) -> list[Row]:
    from playwright.sync_api import sync_playwright

    from app_helpers import make_big_run, serving

    big = 20_000 if quick else 100_000
    reps = 3 if quick else 7
    sizes = (SMALL, big)
    with tempfile.TemporaryDirectory(prefix="featscope-p5-") as tmp, ExitStack() as stack:
        urls = {n: stack.enter_context(serving(make_big_run(Path(tmp) / f"run{n}", n=n)))[0]
                for n in sizes}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                return _measure(browser, urls, sizes, reps)
            finally:
                browser.close()


def _measure(browser: Any, urls: dict[int, str], sizes: tuple[int, int],
             reps: int) -> list[Row]:
    small, big = sizes
    loads: dict[int, list[Load]] = {n: [] for n in sizes}

    def timed_load(n: int):
        def fn() -> float:
            load, _, _ = open_map(browser, urls[n], n)
            loads[n].append(load)
            return load.painted_s
        return fn

    for n in sizes:  # warm-up: the server's first layout, Chromium's first WebGL context
        open_map(browser, urls[n], n)
    med = interleaved({str(n): timed_load(n) for n in sizes}, reps)

    # Interactions and a drawing check, on one more load of each size.
    inter: dict[int, dict[str, int]] = {}
    pixels: dict[int, int] = {}
    zooms: dict[int, list[float]] = {}
    for n in sizes:
        _, page, traffic = open_map(browser, urls[n], n, keep=True)
        try:
            pixels[n] = drawn_pixels(page)
            inter[n] = interactions(page, traffic, n)
            zoom_seconds(page, 1)  # warm-up: the first zoom compiles plotly's shaders
            zooms[n] = zoom_seconds(page, reps)
        finally:
            page.context.close()

    fig = {n: statistics.median(ld.figure_bytes for ld in loads[n]) for n in sizes}
    dash = {n: statistics.median(ld.dash_bytes for ld in loads[n]) for n in sizes}
    total = {n: statistics.median(ld.all_bytes for ld in loads[n]) for n in sizes}
    t = {n: med[str(n)] for n in sizes}
    ratio = t[big] / t[small]
    marginal = (fig[big] - fig[small]) / (big - small)
    rows = [
        Row("P5", f"map bytes per point, {big:,} points", fig[big] / big, unit="B",
            bar="<= 40", ok=fig[big] / big <= 40 and fig[big] > 0,
            detail=(f"{fig[big] / 1e6:.2f} MB in {loads[big][0].figure_responses} response(s); "
                    f"marginal {marginal:.1f} B/point; {small:,} points: {fig[small] / 1e3:.0f} kB "
                    f"({fig[small] / small:.0f} B/point); all Dash JSON to the first view "
                    f"{dash[big] / 1e6:.2f} MB vs {dash[small] / 1e6:.2f} MB; everything incl. "
                    f"scripts {total[big] / 1e6:.1f} MB vs {total[small] / 1e6:.1f} MB")),
        Row("P5", f"first painted map, {big:,} / {small:,} points", ratio, bar="<= 2",
            ok=ratio <= 2 and min(pixels.values()) > 0,
            detail=(f"median {t[big]:.2f} s vs {t[small]:.2f} s over {reps} interleaved cold "
                    f"loads each (navigation -> WebGL scatter drawn); all {big:,}: "
                    + ", ".join(f"{ld.painted_s:.2f}" for ld in loads[big])
                    + f"; drawn pixels {pixels[big]:,} / {pixels[small]:,}")),
    ]
    zb, zs = statistics.median(zooms[big]), statistics.median(zooms[small])
    rows.append(Row(
        "P5", f"drag-zoom, mouse-up -> page responsive, {big:,} points", zb, unit="s",
        detail=(f"{small:,} points: {zs:.3f} s; all {big:,}: "
                + ", ".join(f"{z:.3f}" for z in zooms[big])
                + " (the view change stays with plotly; Dash does not re-render the figure)")))
    # A colour change needs one colour code per point (>= 1.3 B each as base64 uint8, about a
    # tenth of the figure): a quarter catches the figure being sent again. A hover needs a
    # tooltip and a thumbnail, nothing that grows with the run.
    for what, key, limit in (("colour-mode change", "colour", 0.25), ("hover", "hover", 0.01)):
        b = inter[big][key]
        share = b / fig[big]
        rows.append(Row(
            "P5", f"{what}: bytes sent, {big:,} points", b / 1e3, unit="kB",
            bar=f"< {limit:.0%} of the figure", ok=share < limit and inter[big][f"{key}_figure"] == 0,
            detail=(f"{share:.1%} of the figure's {fig[big] / 1e3:.0f} kB; "
                    f"{inter[big][f'{key}_requests']} response(s), "
                    f"{inter[big][f'{key}_figure']} carrying the trace; {small:,} points: "
                    f"{inter[small][key] / 1e3:.1f} kB")))
    return rows


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        print(row.markdown())
