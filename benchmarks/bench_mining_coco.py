#!/usr/bin/env python3
"""Mining speed and memory on a COCO-train-sized instances file, against pycocotools' loader.

    python3 ../shared/bench/make_scale_data.py coco /tmp/coco-scale      # once (437 MB, 860,001 objects)
    python benchmarks/bench_mining_coco.py [--data /tmp/coco-scale] [--preset soebench]

Each phase runs in its own subprocess so that its peak RSS (ru_maxrss) is its own:
  reference: ``pycocotools.coco.COCO(instances_train2017.json)`` (load + index, nothing else);
  mining:    the whole ``build_dataset`` run (parse, filter, masks, colour, captions, plots, write),
             with the wall time of its main steps (imports included in the run's time).
Prints both wall times, the speed ratio and both peak memories. Scratch output goes to the temp folder ($TMPDIR).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import shutil
import sys
import tempfile
from pathlib import Path

PHASE = r"""
import json, resource, sys, time
t0 = time.perf_counter()
kind, ann, images, captions, out, preset, plots, workers = sys.argv[1:9]
extra = {}
if kind == "reference":
    from pycocotools.coco import COCO
    COCO(ann)
else:
    from collections import defaultdict
    import soebench.manifest.io as manifest_io
    import soebench.mining.build as build
    import soebench.mining.sources as sources
    import soebench.mining.summary_plots as summary_plots

    spent = defaultdict(float)

    def timed(owner, name, label):  # wall time spent in one step, summed over its calls
        inner = getattr(owner, name)
        def step(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[label] += time.perf_counter() - start
        setattr(owner, name, step)

    timed(sources, "load_instances", "read instances (msgspec)")
    timed(sources.CocoSource, "candidates", "candidates (incl. read)")
    timed(build, "_mine_groups", "per image: masks, pixels, colour")
    timed(sources.CocoSource, "captions", "captions")
    timed(build, "_to_table", "arrow table")
    timed(summary_plots, "write_plots", "plots")
    timed(manifest_io, "write_manifest", "write parquet")
    imported = time.perf_counter() - t0
    r = build.build_dataset("coco", out, images=images, annotations=ann, captions=captions or None,
                            preset=preset, overwrite=True, plots=plots == "1", workers=int(workers))
    extra = {"kept": r.num_rows, "candidates": r.summary["candidates"], "invalid": r.summary["invalid"],
             "rejected": r.summary["rejected"], "phases": {"imports": imported, **spent}}
print(json.dumps({"seconds": time.perf_counter() - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, **extra}))
"""


def run_phase(kind: str, ann: Path, images: Path, captions: Path | None, out: Path, preset: str, plots: bool = True,
              workers: int = 1) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", PHASE, kind, str(ann), str(images), str(captions or ""), str(out), preset,
         "1" if plots else "0", str(workers)],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"{kind} phase failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/tmp/coco-scale"))
    parser.add_argument("--preset", default="soebench")
    parser.add_argument("--no-captions", action="store_true")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG histograms (matplotlib)")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--workers", type=int, default=1, help="processes for the per-image stage (build_dataset workers=)")
    args = parser.parse_args()
    ann = args.data / "annotations" / "instances_train2017.json"
    captions = None if args.no_captions else args.data / "annotations" / "captions_train2017.json"
    if not ann.is_file():
        raise SystemExit(f"{ann} missing: run python3 ../shared/bench/make_scale_data.py coco {args.data}")
    scratch = Path(tempfile.mkdtemp(prefix="bench-mining-"))
    try:
        report(args, ann, captions, scratch / "coco-train.parquet")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # a manifest of the scale data: nothing to keep


def report(args, ann: Path, captions: Path | None, out: Path) -> None:
    mining = run_phase("mining", ann, args.data / "train2017", captions, out, args.preset, not args.no_plots, args.workers)
    print(f"mining    : {mining['seconds']:7.2f} s  peak RSS {mining['peak_rss_mb']:7.0f} MB  "
          f"({mining['kept']} kept of {mining['candidates']} candidates)")
    print(f"            invalid {mining['invalid']}  rejected {mining['rejected']}")
    if args.workers > 1:  # forked after the parse: most of a worker's pages are shared with the parent
        print(f"            largest worker peak RSS {mining['worker_rss_mb']:.0f} MB (pages shared with the parent included)")
    phases = mining["phases"]
    phases["candidates (incl. read)"] -= phases.get("read instances (msgspec)", 0.0)
    phases = {("candidates" if k.startswith("candidates") else k): v for k, v in phases.items()}
    phases["other (hash wait, filters, summary)"] = mining["seconds"] - sum(phases.values())
    for name, seconds in phases.items():
        print(f"              {name:36s} {seconds:6.2f} s")
    if args.skip_reference:
        return
    ref = run_phase("reference", ann, args.data / "train2017", captions, out, args.preset)
    print(f"pycocotools COCO(): {ref['seconds']:7.2f} s  peak RSS {ref['peak_rss_mb']:7.0f} MB")
    print(f"speed ratio (COCO load / whole mining run): {ref['seconds'] / mining['seconds']:.1f}x   "
          f"memory ratio (mining / COCO load): {mining['peak_rss_mb'] / ref['peak_rss_mb']:.2f}")


if __name__ == "__main__":
    main()
