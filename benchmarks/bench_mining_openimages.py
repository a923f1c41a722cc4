#!/usr/bin/env python3
"""Mining speed and memory on an OpenImages-V7-train-sized segmentation CSV (2.7M masks).

    python3 ../shared/bench/make_scale_data.py openimages /tmp/oi-scale --pixels 20000   # once
    python benchmarks/bench_mining_openimages.py [--data /tmp/oi-scale] [--images 300]

The scale data has mask PNGs but no photos: this script writes ``--images`` synthetic JPEGs
(each at its first mask's size) into a temp folder for the images of the first masks, so the whole path runs for them.
Phases, each in its own subprocess (peak RSS = ru_maxrss of that process):
  reference: ``pandas.read_csv`` of the segmentation CSV (the usual first step of OI tooling);
  mining:    ``build_dataset(..., preset="soe-eval")`` with the bbox CSV (flags) and masks;
  masks:     the mask-reading step alone (``MaskStore.read`` + area fraction), per mask.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PHASE = r"""
import json, resource, sys, time
t0 = time.perf_counter()
kind, data, images, out, nmasks = sys.argv[1:6]
extra = {}
if kind == "reference":
    import pandas as pd
    df = pd.read_csv(f"{data}/train-annotations-object-segmentation.csv")
    extra = {"rows": len(df)}
elif kind == "mining":
    from soebench.mining.build import build_dataset
    r = build_dataset("openimages", out, images=images, classes=f"{data}/class-descriptions-boxable.csv",
                      segmentation_csv=f"{data}/train-annotations-object-segmentation.csv",
                      masks=f"{data}/train-masks", bbox_csv=f"{data}/train-annotations-bbox.csv",
                      preset="soe-eval", overwrite=True)
    extra = {"kept": r.num_rows, "candidates": r.summary["candidates"], "invalid": r.summary["invalid"],
             "rejected": r.summary["rejected"]}
else:
    from pathlib import Path
    from soebench.mining.openimages import MaskStore
    store = MaskStore(Path(data) / "train-masks")
    names = sorted(p.name for p in (Path(data) / "train-masks").iterdir())[: int(nmasks)]
    t1 = time.perf_counter()
    fracs = [float(store.read(n).mean()) for n in names]
    dt = time.perf_counter() - t1
    extra = {"masks": len(names), "ms_per_mask": 1000 * dt / len(names), "mean_fraction": sum(fracs) / len(fracs)}
print(json.dumps({"seconds": time.perf_counter() - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **extra}))
"""


def run_phase(kind: str, data: Path, images: Path, out: Path, nmasks: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", PHASE, kind, str(data), str(images), str(out), str(nmasks)],
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"{kind} phase failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write_images(data: Path, folder: Path, count: int) -> int:
    """Synthetic photos for the images of the first masks that exist on disk."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    present = set(p.name for p in (data / "train-masks").iterdir())
    written: set[str] = set()
    rng = np.random.default_rng(0)
    with open(data / "train-annotations-object-segmentation.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if len(written) >= count:
                break
            if row["MaskPath"] in present and row["ImageID"] not in written:
                # at the mask's size: the scale data draws each mask's shape, and a mask of another
                # aspect ratio than its image is dropped as invalid (as it should be)
                with Image.open(data / "train-masks" / row["MaskPath"]) as mask:
                    w, h = mask.size
                img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
                Image.fromarray(img).save(folder / f"{row['ImageID']}.jpg", quality=80)
                written.add(row["ImageID"])
    return len(written)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/tmp/oi-scale"))
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--masks", type=int, default=2000, help="masks timed in the mask phase")
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args()
    if not (args.data / "train-annotations-object-segmentation.csv").is_file():
        raise SystemExit(f"run python3 ../shared/bench/make_scale_data.py openimages {args.data} --pixels 20000")
    scratch = Path(tempfile.mkdtemp(prefix="bench-oi-"))
    try:
        report(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # synthetic images and a manifest: nothing to keep


def report(args, scratch: Path) -> None:
    n = write_images(args.data, scratch / "images", args.images)
    print(f"wrote {n} synthetic images to {scratch / 'images'}")
    mining = run_phase("mining", args.data, scratch / "images", scratch / "oi.parquet", args.masks)
    print(f"mining    : {mining['seconds']:7.2f} s  peak RSS {mining['peak_rss_mb']:7.0f} MB  "
          f"({mining['kept']} kept of {mining['candidates']} candidates)")
    print(f"            invalid {mining['invalid']}\n            rejected {mining['rejected']}")
    masks = run_phase("masks", args.data, scratch / "images", scratch / "oi.parquet", args.masks)
    print(f"mask read : {masks['ms_per_mask']:.2f} ms per mask over {masks['masks']} masks "
          f"(mask PNGs ~1024x768); 2.7M masks would take {masks['ms_per_mask'] * 2_686_666 / 1000 / 60:.0f} min")
    if args.skip_reference:
        return
    ref = run_phase("reference", args.data, scratch / "images", scratch / "oi.parquet", args.masks)
    print(f"pandas.read_csv(segmentation csv): {ref['seconds']:7.2f} s  peak RSS {ref['peak_rss_mb']:7.0f} MB")
    print(f"speed ratio (read_csv / whole mining run): {ref['seconds'] / mining['seconds']:.2f}x   "
          f"memory ratio (mining / read_csv): {mining['peak_rss_mb'] / ref['peak_rss_mb']:.2f}")


if __name__ == "__main__":
    main()
