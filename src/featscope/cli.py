"""Command line: ``featscope build``, ``featscope serve``, ``featscope demo``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import __version__
from .errors import FeatscopeError


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="featscope", description="See what an image classifier has learned."
    )
    p.add_argument("--version", action="version", version=f"featscope {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="more log output")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="extract features, predict, project: store a run")
    b.add_argument("data", help="class-folder dataset, flat image folder, or CSV/Parquet manifest")
    b.add_argument("--out", required=True, help="run directory to write")
    b.add_argument("--model", default="resnet50",
                   help="resnet50 (default), efficientnet-lite0, torchvision:NAME, or a TorchScript file")
    b.add_argument("--weights", help="fine-tuned state_dict/checkpoint file ('none': random init)")
    b.add_argument("--classes", help="text file with one class name per line")
    b.add_argument("--trust-checkpoint", action="store_true",
                   help="allow full unpickling of the checkpoint (runs code in it; trusted files only)")
    b.add_argument("--feature-layer", help="module whose output is the feature vector")
    b.add_argument("--cam-layer", help="module to use as the Grad-CAM target layer")
    b.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1 ...")
    b.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    b.add_argument("--batch-size", type=int, default=0, help="0 = choose per device")
    b.add_argument("--workers", type=int, default=-1, help="DataLoader workers (-1 = choose)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--neighbors", type=int, default=15, help="UMAP n_neighbors")
    b.add_argument("--min-dist", type=float, default=0.1, help="UMAP min_dist")
    b.add_argument("--dims", type=int, default=2, choices=[2, 3],
                   help="3 also stores a 3-D projection")
    b.add_argument("--reproject", action="store_true",
                   help="fit a fresh map even when only a few images were added")
    b.add_argument("--chunk-size", type=int, default=2048, help="images per stored chunk")
    b.add_argument("--max-pixels", type=int, default=None,
                   help="skip images larger than this many pixels (default: Pillow's guard)")

    s = sub.add_parser("serve", help="open a stored run in the browser")
    s.add_argument("run", help="run directory written by 'featscope build'")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8050)
    s.add_argument("--open", action="store_true", help="open the browser")
    s.add_argument("--device", default="auto")

    d = sub.add_parser("demo", help="build the offline demo and serve it")
    d.add_argument("--out", default=None, help="where to keep the demo (default: a cache folder)")
    d.add_argument("--no-serve", action="store_true", help="build and exit")
    d.add_argument("--port", type=int, default=8050)
    d.add_argument("--open", action="store_true", help="open the browser")
    d.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
    )
    for noisy in ("numba", "PIL", "matplotlib", "urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if args.command == "build":
            return _cmd_build(args)
        if args.command == "serve":
            from .app.server import serve

            serve(args.run, host=args.host, port=args.port, open_browser=args.open,
                  device=args.device)
            return 0
        if args.command == "demo":
            from .demo import run_demo

            run_demo(out=args.out, serve=not args.no_serve, port=args.port,
                     open_browser=args.open, seed=args.seed)
            return 0
    except FeatscopeError as exc:
        print(f"featscope: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("featscope: interrupted; what was extracted is kept and a rerun resumes",
              file=sys.stderr)
        return 130
    return 1


def _cmd_build(args: argparse.Namespace) -> int:
    from .builder import build

    run = build(
        args.data,
        args.out,
        model=args.model,
        weights=args.weights,
        classes=args.classes,
        trust_checkpoint=args.trust_checkpoint,
        feature_layer=args.feature_layer,
        cam_layer=args.cam_layer,
        device=args.device,
        precision=args.precision,
        batch_size=args.batch_size or None,
        workers=None if args.workers < 0 else args.workers,
        seed=args.seed,
        neighbors=args.neighbors,
        min_dist=args.min_dist,
        dims=args.dims,
        chunk_size=args.chunk_size,
        max_pixels=args.max_pixels,
        reproject=args.reproject,
        progress=True,
    )
    print(f"run written to {Path(run.path)} ({len(run)} images); "
          f"view it with: featscope serve {run.path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
