"""Build the Dash app for a run and serve it (waitress), or show it inline in Jupyter.

Start-up never recomputes anything: the run is read from disk (table + memory-mapped arrays),
the map figure is built from the table, and the model for CAMs loads in a background thread
while the page already works.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
import threading
import time
import webbrowser
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from dash import Dash
from flask import abort, request

from ..errors import FeatscopeError
from ..store import Run, load
from .callbacks import register_callbacks
from .cams import CamService, ModelHandle
from .context import AppContext
from .explore_callbacks import register_explore_callbacks
from .figures import map_data
from .jobs import JobRegistry
from .layout import INDEX_STRING, build_layout
from .routes import register_routes
from .thumbs import ThumbCache

log = logging.getLogger(__name__)

WAITRESS_THREADS = 8  # hover, thumbnails and CAMs run side by side; slow CAMs use own threads


def resolve_device(device: str | None) -> str:
    """"auto" means CUDA if available, else CPU."""
    if device in (None, "", "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


def engine_factory(run: Run, device: str) -> Callable[[ModuleType], Any]:
    """A function that rebuilds the run's model and returns a ``CamEngine`` for it."""

    def load_engine(cam_module: ModuleType):
        from ..models import ModelSpec, load_model

        spec = ModelSpec.from_dict(run.meta["model"])
        # Resolved here, in the loader thread: "auto" imports torch, which takes seconds.
        bundle = load_model(spec, dataset_classes=run.class_names or None,
                            device=resolve_device(device))
        built_with = run.meta["model"].get("weights_fingerprint")
        if built_with and bundle.weights_fingerprint != built_with:
            raise FeatscopeError(
                f"the model's weights changed since the run was built ({built_with} -> "
                f"{bundle.weights_fingerprint}); CAMs would not match the map: rebuild the run"
            )
        if run.class_names and len(bundle.class_names) != len(run.class_names):
            raise FeatscopeError(
                f"the model now has {len(bundle.class_names)} classes but the run was built "
                f"with {len(run.class_names)}; rebuild the run"
            )
        built = run.meta["model"].get("fingerprint")
        if built and built != bundle.fingerprint:
            log.warning("the model's weights changed since this run was built; CAMs explain "
                        "the current weights, the map shows the old ones")
        return cam_module.CamEngine(bundle)

    return load_engine


def _as_run(run_or_path: Run | str | Path) -> Run:
    return run_or_path if isinstance(run_or_path, Run) else load(run_or_path)


def create_app(
    run_or_path: Run | str | Path,
    *,
    device: str = "auto",
    model: ModelHandle | None = None,
    start_model: bool = True,
) -> Dash:
    """The featscope Dash app for a stored run. ``model`` replaces the real model and CAM
    code (tests); by default both load in a background thread, so nothing here waits for
    torch."""
    run = _as_run(run_or_path)
    handle = model or ModelHandle(engine_factory(run, device))
    hashes = run.table["hash"] if "hash" in run.table else None
    cams = CamService(
        run.image_path,
        handle,
        # The engine caches trunk activations by this key: the content hash, so that a
        # duplicate image shares them.
        cache_key=(lambda i: str(hashes.iat[i])) if hashes is not None else None,
    )
    ctx = AppContext(
        run=run,
        data=map_data(run.table, run.class_names, run.proj3d),
        thumbs=ThumbCache(run.path),
        cams=cams,
        jobs=JobRegistry(),
        requested_device=device,
    )
    app = Dash(
        __name__,
        title=f"featscope · {run.path.name}",
        update_title=None,
        serve_locally=True,  # works offline: no CDN
        compress=False,
        assets_ignore=".*",  # all style is inline (layout.STYLE)
    )
    app.index_string = INDEX_STRING
    app.layout = build_layout(ctx)
    register_callbacks(app, ctx)
    register_explore_callbacks(app, ctx)
    register_routes(app.server, ctx)
    _refuse_catch_all(app)
    _production_mode(app)
    ctx.app_config = app.config
    app.featscope = ctx  # type: ignore[attr-defined]  # for tests and notebooks
    if start_model:
        handle.start()
    return app


def _refuse_catch_all(app: Dash) -> None:
    """Dash answers every unknown path with its page (for multi-page apps); we have one
    page, so unknown paths are plain 404s."""

    @app.server.before_request
    def _not_found_for_unknown_paths():
        rule = request.url_rule
        if rule is None or rule.rule.endswith("/<path:path>"):
            abort(404)
        return None


def _production_mode(app: Dash) -> None:
    """Never Flask's debug mode nor Dash's dev tools, whatever the environment says: Flask
    reads FLASK_DEBUG when the app is made and Dash its DASH_DEBUG/DASH_UI/... variables, so
    one left in the shell would otherwise change what ``featscope serve`` does."""
    app.server.debug = False
    app.enable_dev_tools(
        debug=False, dev_tools_ui=False, dev_tools_props_check=False,
        dev_tools_serve_dev_bundles=False, dev_tools_hot_reload=False,
        dev_tools_prune_errors=False, dev_tools_validate_callbacks=False,
        dev_tools_silence_routes_logging=False,
    )


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback
                       for info in socket.getaddrinfo(host, None))
        except OSError:
            return False


def exposure_warning(host: str) -> str | None:
    """The warning printed when the app is bound to something other than loopback."""
    if _is_loopback(host):
        return None
    return (f"warning: listening on {host}: anyone who can reach this machine on the network "
            "can open the app and see the images; use --host 127.0.0.1 to keep it local")


def make_server(
    run_or_path: Run | str | Path,
    host: str = "127.0.0.1",
    port: int = 8050,
    *,
    device: str = "auto",
    threads: int = WAITRESS_THREADS,
    app: Dash | None = None,
):
    """A waitress server (not started; ``.run()`` blocks, ``.close()`` stops) and its app.
    Port 0 picks a free port (``server.effective_port``)."""
    from waitress.server import create_server

    app = app or create_app(run_or_path, device=device)
    server = create_server(app.server, host=host, port=port, threads=threads,
                           ident="featscope", clear_untrusted_proxy_headers=True)
    return server, app


class BackgroundServer:
    """waitress serving the app in a daemon thread (tests, notebooks, scripts)::

        with BackgroundServer.start(run, port=0) as srv:
            print(srv.url)
    """

    def __init__(self, server: Any, app: Dash):
        self.server = server
        self.app = app
        self.thread = threading.Thread(target=server.run, name="featscope-server", daemon=True)

    @classmethod
    def start(cls, run_or_path: Run | str | Path | None = None, host: str = "127.0.0.1",
              port: int = 0, *, app: Dash | None = None, **kw: Any) -> BackgroundServer:
        server, app = make_server(run_or_path, host, port, app=app, **kw)
        self = cls(server, app)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://{self.server.effective_host}:{self.server.effective_port}"

    def stop(self, timeout: float = 5.0) -> None:
        """Close the sockets from inside waitress's own loop (closing them from another
        thread races with its select), then let the loop end."""
        import waitress.wasyncore as wasyncore

        self.app.featscope.jobs.cancel_all()  # type: ignore[attr-defined]
        self.server.trigger.pull_trigger(lambda: wasyncore.close_all(self.server._map))
        self.thread.join(timeout)
        self.server.task_dispatcher.shutdown()

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    run: Run | str | Path,
    host: str = "127.0.0.1",
    port: int = 8050,
    open_browser: bool = False,
    device: str = "auto",
) -> None:
    """``featscope serve``: load the run once, print the URL, serve until interrupted."""
    t0 = time.perf_counter()
    warning = exposure_warning(host)
    try:
        server, app = make_server(run, host, port, device=device)
    except OSError as exc:
        raise FeatscopeError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from exc
    ctx: AppContext = app.featscope  # type: ignore[attr-defined]
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if ":" in shown_host:
        shown_host = f"[{shown_host}]"
    url = f"http://{shown_host}:{server.effective_port}/"
    print(f"featscope: {ctx.run.path.name}: {ctx.n:,} images, ready in "
          f"{time.perf_counter() - t0:.1f} s (the model for CAMs loads in the background, "
          f"device {ctx.device})")
    if warning:
        print(warning, file=sys.stderr)
    print(f"featscope: serving on {url}  (Ctrl+C to stop)", flush=True)
    if open_browser:
        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    try:
        server.run()
    finally:
        ctx.jobs.cancel_all()
        server.close()


def show(
    run_or_path: Run | str | Path,
    *,
    mode: str = "inline",
    port: int | None = None,
    host: str = "127.0.0.1",
    height: int = 820,
    width: str = "100%",
    device: str = "auto",
    **kw: Any,
) -> Dash:
    """``featscope.show(run)``: the same app inline in a Jupyter notebook (Dash's jupyter
    mode). ``mode`` is "inline", "external", "tab" or "jupyterlab"."""
    app = create_app(run_or_path, device=device)
    if port is None:
        port = free_port(host)
    app.run(jupyter_mode=mode, jupyter_height=height, jupyter_width=width, host=host,
            port=port, debug=False, **kw)
    return app


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
