"""The real waitress server under load and attack (loopback only, bounded request loops).

* Concurrent CAM requests give exactly the bytes the same request gives alone.
* The server process's memory does not grow with the number of CAMs it has computed.
* Hostile ids never reach the file system; only the run's own images are ever opened.
* ``featscope serve`` listens on loopback unless told otherwise (and then warns), and neither
  Flask's debug mode nor Dash's dev tools are ever on.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

N_CLIENTS = 8
PER_CLIENT = 50
GRADIENT = ("gradcam", "gradcam++", "xgradcam", "hirescam", "layercam")
Key = tuple[int, int, str]  # image id, class index, method


# --------------------------------------------------------------------------------------
# HTTP helpers: raw http.client, so no client normalises a path or retries anything.


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def request(port: int, path: str, method: str = "GET", body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 60.0) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


class Client:
    """One keep-alive connection, like a browser tab's."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def get(self, path: str) -> Reply:
        self.conn.request("GET", path)
        resp = self.conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())

    def close(self) -> None:
        self.conn.close()


def cam_path(key: Key, kind: str = "heatmap") -> str:
    image_id, cls, method = key
    # urlencode: "gradcam++" must arrive as such, not as "gradcam  ".
    return f"/cam/{image_id}?{urlencode({'cls': cls, 'method': method, 'kind': kind})}"


def run_clients(port: int, plans: list[list[Key]]) -> list[list[tuple[Key, Reply, float]]]:
    """Each plan on its own thread and connection, all released at once; (key, reply,
    seconds) per request, in order."""
    results: list[list[tuple[Key, Reply, float]]] = [[] for _ in plans]
    errors: list[BaseException] = []
    start = threading.Barrier(len(plans))

    def client(k: int) -> None:
        c = Client(port)
        try:
            start.wait(timeout=30)
            for key in plans[k]:
                t = time.perf_counter()
                reply = c.get(cam_path(key))
                results[k].append((key, reply, time.perf_counter() - t))
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)
        finally:
            c.close()

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(len(plans))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a client hung"
    assert not errors, errors
    return results


# --------------------------------------------------------------------------------------
# The in-process server


@pytest.fixture(scope="module")
def server(lite_run):
    """waitress on a free loopback port serving the real fine-tuned run, model loaded."""
    from featscope.app.server import BackgroundServer

    srv = BackgroundServer.start(lite_run.path, "127.0.0.1", 0, device="cpu")
    srv.app.featscope.cams.model.get()  # wait for the model: this file is about serving CAMs
    yield srv
    srv.stop()
    assert not srv.thread.is_alive()


class ComputeProbe:
    """Wraps the engine's ``compute``: counts calls and the most that ran at once."""

    def __init__(self, inner: Callable[..., Any]):
        self.inner = inner
        self.lock = threading.Lock()
        self.calls = 0
        self.running = 0
        self.max_running = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            self.calls += 1
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            return self.inner(*args, **kwargs)
        finally:
            with self.lock:
                self.running -= 1


def client_plans(n_images: int, n_classes: int, seed: int = 0) -> list[list[Key]]:
    """8 plans of 50 requests. A client owns the images ``i % 8 == k``: the app cancels a
    running CAM when a newer request for *another* class of the same image arrives (latest
    click wins), so two clients on one image would race by design, not by bug."""
    plans = []
    for k in range(N_CLIENTS):
        rng = random.Random(seed * 100 + k)
        images = [i for i in range(n_images) if i % N_CLIENTS == k]
        keys = [(i, c, m) for i in images for c in range(n_classes) for m in GRADIENT]
        rng.shuffle(keys)
        keys = keys[:16]
        plan = [keys[j % len(keys)] for j in range(PER_CLIENT - 2)]
        rng.shuffle(plan)
        # Eigen-CAM is ~20x slower here (a 1280x1280 SVD): two per client keep the file fast.
        for _ in range(2):
            plan.insert(rng.randrange(len(plan) + 1), (images[0], k % n_classes, "eigencam"))
        plans.append(plan)
    return plans


def test_concurrent_cams_equal_the_same_request_alone(server, lite_run, monkeypatch):
    ctx = server.app.featscope
    port = server.server.effective_port
    engine = ctx.cams.model.get()
    # Every request below computes: the CAM cache is never read (it is still written).
    monkeypatch.setattr(ctx.cams, "cached", lambda key: None)
    probe = ComputeProbe(engine.compute)
    monkeypatch.setattr(engine, "compute", probe)

    plans = client_plans(len(lite_run.table), len(lite_run.class_names))
    distinct = sorted({key for plan in plans for key in plan})
    reference: dict[Key, bytes] = {}
    c = Client(port)
    try:
        for key in distinct:  # alone: one request at a time
            reply = c.get(cam_path(key))
            assert reply.status == 200, (key, reply.status, reply.body[:200])
            reference[key] = reply.body
    finally:
        c.close()
    assert probe.calls == len(distinct) and probe.max_running == 1
    # Mixed-up results would show: nearly every reference is a different picture.
    assert len(set(reference.values())) >= 0.8 * len(reference)

    engine.clear_cache()  # the trunk activations too: the concurrent phase starts cold
    probe.calls = probe.max_running = 0
    t0 = time.perf_counter()
    results = run_clients(port, plans)
    wall = time.perf_counter() - t0

    n = N_CLIENTS * PER_CLIENT
    replies = [r for client in results for r in client]
    assert len(replies) == n
    bad = [(key, r.status, r.body[:120]) for key, r, _ in replies if r.status != 200]
    assert not bad, bad
    assert all(r.headers["content-type"] == "image/png" for _, r, _ in replies)
    mixed = [key for key, r, _ in replies if r.body != reference[key]]
    assert not mixed, f"{len(mixed)} of {n} responses differ from the same request alone: {mixed[:5]}"
    assert probe.calls == n  # every response was computed for it, none came from a cache
    assert probe.max_running >= 4  # and computations really overlapped

    lat = sorted(s for _, _, s in replies)
    q = statistics.quantiles(lat, n=100)
    print(f"\n{N_CLIENTS} clients x {PER_CLIENT} CAMs: {n / wall:.1f} req/s, latency p50 "
          f"{q[49] * 1e3:.0f} ms, p95 {q[94] * 1e3:.0f} ms, max {lat[-1] * 1e3:.0f} ms; "
          f"{probe.max_running} computing at once; alone {len(distinct)} distinct")


def test_head_and_full_path_engines_share_one_model_concurrently(server, lite_run, monkeypatch):
    """A model without a known head takes the full path: pytorch-grad-cam's hooks on the
    shared model itself. Two servers, one model object: full-path CAMs on one and trunk
    forwards (with their own hook) on the other run at the same time; neither may see the
    other's activations or gradients."""
    from featscope.app.cams import ModelHandle
    from featscope.app.server import BackgroundServer, create_app
    from featscope.cam import CamEngine

    ctx = server.app.featscope
    head_engine = ctx.cams.model.get()
    full_engine = CamEngine(replace(head_engine.bundle, head=None))
    assert not full_engine.uses_fast_path("gradcam")
    app = create_app(lite_run.path, device="cpu", model=ModelHandle.ready_with(full_engine))
    full = BackgroundServer.start(app=app)
    try:
        ports = [server.server.effective_port, full.server.effective_port]
        for cams in (ctx.cams, app.featscope.cams):
            monkeypatch.setattr(cams, "cached", lambda key: None)
        methods = ("gradcam", "hirescam", "layercam")
        # 4 clients per server; client k owns the images i % 8 == k on its server.
        plans = [[(i, (i + j) % 3, methods[j % 3])
                  for j in range(3) for i in range(len(lite_run.table)) if i % 8 == k][:6]
                 for k in range(8)]
        reference: dict[tuple[int, Key], bytes] = {}
        for k, plan in enumerate(plans):
            for key in plan:
                reply = request(ports[k % 2], cam_path(key))
                assert reply.status == 200, reply.body[:200]
                reference[(k % 2, key)] = reply.body
        head_engine.clear_cache()  # the trunks run again, concurrently with full-path CAMs

        results: list[list[tuple[Key, Reply, float]]] = [[] for _ in plans]

        def drive(port_index: int) -> None:
            mine = [k for k in range(8) if k % 2 == port_index]
            for k, res in zip(mine, run_clients(ports[port_index], [plans[k] for k in mine]),
                              strict=True):
                results[k] = res

        drivers = [threading.Thread(target=drive, args=(p,)) for p in (0, 1)]
        for t in drivers:
            t.start()
        for t in drivers:
            t.join(timeout=300)
        for k, res in enumerate(results):
            assert len(res) == len(plans[k])
            for key, reply, _ in res:
                assert reply.status == 200, reply.body[:200]
                assert reply.body == reference[(k % 2, key)], (k % 2, key)
        # The full path's hooks never stay on the shared model.
        model = head_engine.bundle.model
        assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())
    finally:
        full.stop()


# --------------------------------------------------------------------------------------
# Memory: a server subprocess whose CAM cache keeps one item, so every request computes


LEAK_SERVER = """
import sys
from flask import jsonify
from featscope.app.server import make_server

server, app = make_server(sys.argv[1], "127.0.0.1", 0, device="cpu")
cams = app.featscope.cams
cams.cache_bytes = 1  # the LRU keeps only the newest CAM: bounded, and every request computes

@app.server.route("/_test/state")
def _state():
    return jsonify(computed=cams.computed, cached=len(cams._cache), model=cams.model.status)

print(f"featscope: serving on http://127.0.0.1:{server.effective_port}/", flush=True)
server.run()
"""


@dataclass
class Served:
    proc: subprocess.Popen
    port: int
    out: list[str]
    err: list[str]


def _pump(stream: Any, lines: list[str], q: queue.Queue[str] | None) -> None:
    for line in stream:
        lines.append(line)
        if q is not None:
            q.put(line)


@pytest.fixture()
def spawn() -> Iterator[Callable[..., Served]]:
    """Start a server process; wait (bounded) for its URL line; always stop it."""
    procs: list[subprocess.Popen] = []

    def start(args: list[str], env: dict[str, str] | None = None) -> Served:
        proc = subprocess.Popen(
            [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        procs.append(proc)
        out: list[str] = []
        err: list[str] = []
        q: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_pump, args=(proc.stdout, out, q), daemon=True).start()
        threading.Thread(target=_pump, args=(proc.stderr, err, None), daemon=True).start()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                line = q.get(timeout=1)
            except queue.Empty:
                assert proc.poll() is None, f"server exited: {''.join(err)[-2000:]}"
                continue
            m = re.search(r"serving on (http://\S+?):(\d+)/", line)
            if m:
                return Served(proc, int(m.group(2)), out, err)
        raise AssertionError(f"no URL within 90 s: {''.join(out + err)[-2000:]}")

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))


def test_memory_does_not_grow_with_the_number_of_cams(spawn, lite_run):
    srv = spawn(["-c", LEAK_SERVER, str(lite_run.path)])

    def state() -> dict[str, Any]:
        return json.loads(request(srv.port, "/_test/state").body)

    deadline = time.monotonic() + 120
    while state()["model"] == "loading":
        assert time.monotonic() < deadline, "the model did not load"
        time.sleep(0.25)
    n_images, n_classes = len(lite_run.table), len(lite_run.class_names)
    cycle = n_images * n_classes * len(GRADIENT)

    def key(j: int) -> Key:
        # 15 consecutive keys per image (3 classes x 5 methods): the trunk runs once per image
        # visit, as it would for a user; the sequence repeats after ``cycle`` distinct keys.
        j %= cycle
        per_image = n_classes * len(GRADIENT)
        return (j // per_image) % n_images, j % n_classes, GRADIENT[(j // n_classes) % len(GRADIENT)]

    def batch(start: int, count: int) -> None:
        # 4 clients; all keys of one image go to one client (no latest-click-wins races).
        plans: list[list[Key]] = [[] for _ in range(4)]
        for j in range(start, start + count):
            plans[key(j)[0] % 4].append(key(j))
        for client in run_clients(srv.port, plans):
            for k, reply, _ in client:
                assert reply.status == 200, (k, reply.status, reply.body[:200])

    idle = rss_kib(srv.proc.pid)
    batch(0, 120)  # warm-up: every waitress thread, allocator arenas, lazy imports
    done = 120
    computed0 = state()["computed"]
    series: list[tuple[int, int]] = []
    for _ in range(10):  # RSS after every 50 requests
        batch(done, 50)
        done += 50
        series.append((done - 120, rss_kib(srv.proc.pid)))
    st = state()
    assert st["computed"] - computed0 == 500  # no request was answered from the cache
    assert st["cached"] == 1  # and the cache stayed bounded
    at50, at500 = series[0][1], series[-1][1]
    print(f"\nserver RSS with the model loaded {idle / 1024:.0f} MiB, after 50 CAMs "
          f"{at50 / 1024:.0f} MiB, after 500 {at500 / 1024:.0f} MiB "
          f"({(at500 / at50 - 1) * 100:+.1f} %); series (MiB): "
          + ", ".join(f"{n}: {r / 1024:.0f}" for n, r in series))
    assert at500 <= at50 * 1.10


# --------------------------------------------------------------------------------------
# Hostile ids over real HTTP, with every file open in the process watched


_AUDIT: dict[str, Any] = {"on": False, "opened": [], "installed": False}


def _audit_hook(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and _AUDIT["on"]:
        path = args[0]
        if isinstance(path, (str, bytes, os.PathLike)):
            _AUDIT["opened"].append(os.fsdecode(os.fspath(path)))


def watch_opens() -> list[str]:
    """Start recording every ``open`` in this process (audit hooks cannot be removed: one
    hook for the session, switched on and off)."""
    if not _AUDIT["installed"]:
        sys.addaudithook(_audit_hook)
        _AUDIT["installed"] = True
    _AUDIT["opened"] = []
    _AUDIT["on"] = True
    return _AUDIT["opened"]


def stop_watching() -> None:
    _AUDIT["on"] = False


def hostile_ids(n: int) -> list[str]:
    return [
        "../../etc/passwd", "..%2f..%2fetc%2fpasswd", "..%2F..%2Fetc%2Fpasswd", "%2e%2e%2f",
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "..", "../0", "0/../../../etc/passwd", "/etc/passwd",
        "%2fetc%2fpasswd", "..%5c..%5cwindows", "-1", "-0", str(10**30), "1e3", "abc", "0x1",
        "1.0", "1.5", "%201", "1%00", "%00", "0;ls", str(n), str(n + 1), "1/", "+1",
    ]


def test_hostile_ids_are_404_and_open_no_file(server, lite_run):
    ctx = server.app.featscope
    port = server.server.effective_port
    n = len(lite_run.table)
    assert request(port, "/image/%2e%2e").status == 404  # lazy imports happen before watching
    try:
        opened = watch_opens()
        # The watch works: a real image request opens exactly that image's file.
        assert request(port, "/image/0").status == 200
        assert str(ctx.image_path(0)) in opened
        opened.clear()
        for endpoint in ("image", "thumb", "cam"):
            for raw in hostile_ids(n):
                for query in ("", "?cls=0&method=gradcam&kind=heatmap"):
                    reply = request(port, f"/{endpoint}/{raw}{query}")
                    assert reply.status == 404, (endpoint, raw, reply.status)
                    assert b"root:" not in reply.body
        # Hostile parameters of a real image's CAM.
        for query, status in [("cls=-1", 404), (f"cls={10**30}", 404), ("cls=3", 404),
                              ("cls=1.0", 404), ("cls=..%2f..%2fetc%2fpasswd", 404),
                              ("cls=0&method=..%2f..%2fetc%2fpasswd", 404),
                              ("cls=0&method=gradcam&kind=..%2fpasswd", 400)]:
            reply = request(port, f"/cam/0?{query}")
            assert reply.status == status, (query, reply.status)
        for path in ("/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/etc/passwd",
                     "//etc/passwd", "/run.json", "/thumbs/"):
            assert request(port, path).status == 404, path
    finally:
        stop_watching()
    assert not [p for p in opened if "passwd" in p or "windows" in p], opened
    # Nothing else was read either: only Python's own files (a lazy import) could appear.
    roots = tuple(str(Path(p).resolve()) for p in {sys.prefix, sys.base_prefix})
    outside = [p for p in opened if not str(Path(p).resolve()).startswith(roots)]
    assert not outside, outside


# --------------------------------------------------------------------------------------
# Binding and debug mode of ``featscope serve``


def listeners(port: int) -> set[str]:
    """Local addresses listening on ``port`` (from /proc/net/tcp{,6}: no traffic needed)."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if state == "0A" and int(p, 16) == port and len(addr) == width:
                if width == 8:
                    found.add(".".join(str(b) for b in bytes.fromhex(addr)[::-1]))
                else:
                    found.add("::" if int(addr, 16) == 0 else addr)
    return found


def dash_config(page: bytes) -> dict[str, Any]:
    m = re.search(rb'<script id="_dash-config" type="application/json">(.*?)</script>', page,
                  re.S)
    assert m, "no Dash config in the page"
    return json.loads(m.group(1))


def assert_no_debugger(port: int) -> None:
    page = request(port, "/")
    assert page.status == 200 and b"featscope" in page.body
    config = dash_config(page.body)
    assert config["ui"] is False and config["props_check"] is False
    assert "hot_reload" not in config  # set only when Dash's dev tools are on
    # A callback that does not exist, and one that is not even JSON: a plain error, no trace.
    for body in (json.dumps({"output": "nope.children", "outputs": {"id": "nope",
                                                                    "property": "children"},
                             "inputs": [], "changedPropIds": []}).encode(), b"{not json"):
        reply = request(port, "/_dash-update-component", "POST", body,
                        {"Content-Type": "application/json"})
        assert reply.status in (400, 500), reply.status
        for marker in (b"Traceback", b"Werkzeug", b"__debugger__", b"File \"", b".py"):
            assert marker not in reply.body, (marker, reply.body[:300])
    # The Werkzeug debugger's console and resources do not exist.
    assert request(port, "/console").status == 404
    res = request(port, "/?__debugger__=yes&cmd=resource&f=debugger.js")
    assert b"Werkzeug" not in res.body and "javascript" not in res.headers.get("content-type", "")


def test_serve_binds_loopback_by_default_and_no_debugger(spawn, lite_run):
    srv = spawn(["-m", "featscope", "serve", str(lite_run.path), "--port", "0",
                 "--device", "cpu"])
    url_line = next(line for line in srv.out if "serving on" in line)
    assert f"http://127.0.0.1:{srv.port}/" in url_line
    assert listeners(srv.port) == {"127.0.0.1"}  # not 0.0.0.0, not ::
    assert_no_debugger(srv.port)
    assert not any("listening on" in line for line in srv.err), srv.err  # no exposure warning


def test_non_loopback_host_warns(spawn, lite_run):
    # Bound on every interface, but no traffic is sent anywhere: the warning is the test.
    srv = spawn(["-m", "featscope", "serve", str(lite_run.path), "--host", "0.0.0.0",
                 "--port", "0", "--device", "cpu"])
    deadline = time.monotonic() + 10  # stderr is read by its own thread
    while not any("warning" in line for line in srv.err) and time.monotonic() < deadline:
        time.sleep(0.05)
    warning = "".join(srv.err)
    assert "warning: listening on 0.0.0.0" in warning and "--host 127.0.0.1" in warning
    assert listeners(srv.port) == {"0.0.0.0"}


def test_debug_environment_variables_do_not_turn_debugging_on(lite_run, monkeypatch):
    """FLASK_DEBUG and Dash's DASH_* variables switch debug modes on in apps that read the
    environment; a served featscope must stay in production mode regardless."""
    from app_helpers import make_app
    from featscope.app.server import BackgroundServer

    for name, value in [("FLASK_DEBUG", "1"), ("DASH_DEBUG", "true"), ("DASH_UI", "true"),
                        ("DASH_PROPS_CHECK", "true"), ("DASH_HOT_RELOAD", "true"),
                        ("DASH_SERVE_DEV_BUNDLES", "true"), ("DASH_PRUNE_ERRORS", "true")]:
        monkeypatch.setenv(name, value)
    app, _ = make_app(lite_run.path)
    assert app.server.debug is False
    with BackgroundServer.start(app=app) as srv:
        assert_no_debugger(srv.server.effective_port)
