"""``summary.json`` of a run: configuration, data hash, versions, metric means with intervals,
breakdowns by object size and category, set-level distances, taxonomy and errors."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any


def build_summary(run: Any, config: dict[str, Any], frame: Any, parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    from soebench import __version__
    from soebench.metrics import CLIP_PREPROCESS_MODE, FID_RESIZE_DESCRIPTION, FID_RESIZE_MODE, SIZE_BUCKET_NAMES
    from soebench.metrics.preprocess import CLIP_PREPROCESS_DESCRIPTION
    from soebench.run.results import breakdown, errors_summary, git_commit, metric_means, \
        package_versions, taxonomy_summary
    from soebench.run.scoring import PER_SAMPLE_METRICS

    per_sample = [m for m in PER_SAMPLE_METRICS if m in run.scorer.names]
    ok = frame[frame["error"].isna()]
    git = git_commit()
    stats = [p.get("stats", {}) for p in parts]
    return {
        "run_name": run.opts.run_name or run.run_dir.name,
        "created": _now(),
        "soebench_version": __version__,
        "model": {"name": run.model_name, "args": run.model_args,
                  "cache_token": run.token},  # checked before the run (soebench.run.generate.adapter_token)
        "manifest": {"path": str(run.manifest.path), "sha256": run.manifest_sha256,
                     "num_samples": int(len(frame)), "num_rows": int(len(run.manifest)), "limit": run.opts.limit,
                     "metadata": {k: v for k, v in run.manifest.metadata.items() if k in ("preset", "images_root", "schema_version")}},
        "prompt_key": run.opts.prompt_key,
        "seed": run.opts.seed,
        "batch_size": run.opts.batch_size,
        "device": run.opts.device,
        "world_size": run.shard.world_size,
        "config_hash": run.config_hash,
        "metrics": {
            **run.metrics_info,
            "modes": {"fid_resize": FID_RESIZE_MODE, "fid_resize_description": FID_RESIZE_DESCRIPTION,
                      "clip_preprocess": CLIP_PREPROCESS_MODE,
                      "clip_preprocess_description": CLIP_PREPROCESS_DESCRIPTION,
                      "bg_dilation_radius_at_512": run.scorer.bg.radius_at_512,
                      "bg_psnr_mean": "finite values only; untouched backgrounds (inf dB) counted in n_inf"},
            "n_scored": int(len(ok)),
            "means": metric_means(ok, per_sample, seed=run.opts.seed),
            "distances": run.scorer.distances(),
            "distances_by_size_bucket": run.scorer.distances_by_group(SIZE_BUCKET_NAMES),
            "by_size_bucket": breakdown(ok, per_sample, "size_bucket", SIZE_BUCKET_NAMES, seed=run.opts.seed),
            "by_category": breakdown(ok, per_sample, "category", seed=run.opts.seed),
            "bootstrap": {"n_resamples": 1000, "level": 0.95, "seed": run.opts.seed},
        },
        "taxonomy": taxonomy_summary(frame),
        "errors": errors_summary(frame),
        "size_buckets": size_buckets_entry(frame["size_bucket"]),
        "timing": {"seconds_per_shard": [s.get("seconds") for s in stats],
                   "adapter_calls": sum(int(s.get("adapter_calls", 0)) for s in stats),
                   "from_cache": sum(int(s.get("from_cache", 0)) for s in stats)},
        "versions": package_versions(),
        "git_commit": git["commit"],
        "git_dirty": git["dirty"],
    }


def size_buckets_entry(buckets: Any) -> dict[str, Any]:
    """What the size buckets are and how many samples each holds: every bucket in order with its
    edges, so the ``by_size_bucket`` breakdowns can be read without the source (a bucket without
    samples has count 0)."""
    from soebench.metrics.bootstrap import SIZE_BUCKET_BASIS, size_bucket_edges

    seen = {str(k): int(v) for k, v in buckets.value_counts().items()}
    edges = size_bucket_edges()
    return {
        "of": SIZE_BUCKET_BASIS,
        "rule": "a bucket holds lower <= fraction < upper (upper null: no upper edge)",
        "edges": {name: list(span) for name, span in edges.items()},
        "counts": {name: seen.get(name, 0) for name in edges},
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
