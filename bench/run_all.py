"""Run the benchmark suite and print one markdown table of ratios measured side by side.

    python bench/run_all.py            # full sizes (tens of minutes on 2 cores)
    python bench/run_all.py --quick    # small sizes: checks that every benchmark works
    python bench/run_all.py --only P1  # one figure
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import machine  # noqa: E402

MODULES = {
    "P1": "bench_extract",
    "P2": "bench_cache",
    "P3": "bench_cam",
    "P4": "bench_projection",
    "P5": "bench_browser",
    "bf16": "bench_precision",
    "mem": "bench_memory",
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="*", choices=list(MODULES))
    args = ap.parse_args()
    print(f"machine: {machine()}; mode: {'quick' if args.quick else 'full'}", flush=True)
    print("| figure | measure | value | bar | meets bar | detail |")
    print("|---|---|---|---|---|---|")
    failed = 0
    for key in args.only or MODULES:
        t = time.perf_counter()
        try:
            mod = importlib.import_module(MODULES[key])
        except ModuleNotFoundError:
            print(f"| {key} | (no benchmark yet) | | | | |")
            continue
        for row in mod.run(quick=args.quick):
            print(row.markdown(), flush=True)
        print(f"<!-- {key} took {time.perf_counter() - t:.0f} s -->", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
