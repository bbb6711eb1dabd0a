"""Image endpoints on the app's Flask server, by integer id from the run's index only.

``/image/<id>``, ``/thumb/<id>``, ``/cam/<id>?cls=<int>&method=<key>&kind=overlay|heatmap``.
No endpoint takes a path from the browser: the id is parsed strictly (digits only, inside the
index) and the file is looked up in the run's table; anything else is a 404.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, abort, request, send_file

from ..errors import FeatscopeError
from .cams import KINDS, CamKey, Superseded
from .context import AppContext
from .panels import parse_index

log = logging.getLogger(__name__)

CACHE = "private, max-age=86400"  # URLs carry the build version (?v=), so they may be cached


def _image_id(ctx: AppContext, raw: str) -> int:
    image_id = parse_index(raw, ctx.n)
    if image_id is None:
        abort(404)
    return image_id


def _bytes(data: bytes, mimetype: str, etag: str) -> Response:
    resp = Response(data, mimetype=mimetype)
    resp.set_etag(etag)
    resp.headers["Cache-Control"] = CACHE
    return resp.make_conditional(request)


def register_routes(server: Flask, ctx: AppContext) -> None:
    """Add the image endpoints (and safe default headers) to ``server``."""

    @server.after_request
    def _headers(resp: Response) -> Response:
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        return resp

    @server.route("/image/<path:raw>")
    def image(raw: str):
        image_id = _image_id(ctx, raw)
        path = ctx.image_path(image_id)
        try:
            data, mimetype = ctx.thumbs.display(path, ctx.content_hash(image_id))
        except (OSError, FeatscopeError) as exc:
            log.warning("image %d (%s): %s", image_id, path, exc)
            abort(404)
        if isinstance(data, bytes):
            return _bytes(data, mimetype, f"d{ctx.version}-{image_id}")
        resp = send_file(data, mimetype=mimetype, conditional=True, etag=True, max_age=86400)
        resp.headers["Cache-Control"] = CACHE
        return resp

    @server.route("/thumb/<path:raw>")
    def thumb(raw: str):
        image_id = _image_id(ctx, raw)
        try:
            data = ctx.thumbs.get(ctx.image_path(image_id), ctx.content_hash(image_id))
        except (OSError, FeatscopeError) as exc:
            log.warning("thumbnail %d: %s", image_id, exc)
            abort(404)
        return _bytes(data, "image/jpeg", f"t{ctx.version}-{image_id}")

    @server.route("/cam/<path:raw>")
    def cam(raw: str):
        image_id = _image_id(ctx, raw)
        args = request.args
        target = parse_index(args.get("cls"), len(ctx.class_names))
        if target is None and "cls" not in args:
            target = int(ctx.table["pred_index"].iat[image_id])
        method = args.get("method", "gradcam")
        kind = args.get("kind", "overlay")
        if target is None or method not in ctx.cam.METHODS:
            abort(404)
        if kind not in KINDS:
            abort(400)
        key = CamKey(image_id, target, method)
        item = ctx.cams.cached(key)
        if item is None:
            if ctx.cams.is_slow(method):
                # Minutes of work: only as a background job the user started (see the app).
                return Response(f"{method} is slow; start it from the app\n", status=409,
                                mimetype="text/plain")
            try:
                item = ctx.cams.get(key)
            except Superseded:
                return Response("superseded by a newer request for this image\n", status=409,
                                mimetype="text/plain")
            except FeatscopeError as exc:
                return Response(f"{exc}\n", status=503, mimetype="text/plain")
            except (OSError, ValueError) as exc:
                log.warning("CAM %s: %s", key, exc)
                abort(404)
        data, mimetype = item.image(kind)
        return _bytes(data, mimetype, f"c{ctx.version}-{image_id}-{target}-{method}-{kind}")
