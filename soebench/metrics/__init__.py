"""Metrics of ``soebench evaluate``: pure functions, stateful classes and feature-network loaders.

- :mod:`~soebench.metrics.functional` pure functions (Fréchet distance, KID, CLIP-Score,
  masked PSNR/SSIM/MSE).
- :class:`CLIPScore`, :class:`FID`, :class:`KID`, :class:`BackgroundPreservation`: torchmetrics-style
  ``update``/``compute``/``reset``, states that merge by adding (``a + b``, ``state_dict()``).
- :func:`load_clip`, :func:`load_inception`: feature networks from local files only
  (:class:`~soebench.errors.MissingWeightsError` with a how-to otherwise).
- :func:`bootstrap_ci`, :func:`bootstrap_by`, :func:`size_bucket` for summaries.
- :data:`METRICS` registry and :func:`available_metrics` / :func:`resolve_metrics`.

Importing this package does not import torch or open_clip (the CLI stays fast).

Typical use by the evaluator (per batch of samples; images are uint8 HxWx3 RGB)::

    chosen = resolve_metrics(None, ClipSpec(weights=clip_weights), inception_weights)
    encoder = load_clip(ClipSpec(weights=clip_weights), device=device)   # if CLIP metrics chosen
    inception = load_inception(inception_weights, device=device)          # if FID/KID chosen
    local, glob = CLIPScore(encoder, region="local"), CLIPScore(encoder, region="global")
    per_sample_local = local.update(generated, prompts, bboxes)           # bboxes: manifest [x, y, w, h]
    fid_crop, kid_crop = FID(), KID()
    for is_real, imgs in ((True, originals), (False, generated)):
        crops = [crop_box(im, eval_crop) for im, eval_crop in zip(imgs, eval_crops)]
        feats = extract_features(inception, crops)                         # clean resize + Inception
        fid_crop.update_features(feats, real=is_real); kid_crop.update_features(feats, real=is_real)
    bg = BackgroundPreservation()
    values = bg.update(original, generated_one, object_mask, sample_id=sid)  # bg_psnr, bg_ssim, bg_mse
    fid_crop.compute().to_dict()  # value, n_real, n_fake, mode ("clean"), reason if NaN
"""

from soebench.metrics.bootstrap import (
    SIZE_BUCKET_NAMES,
    SIZE_BUCKETS,
    BootstrapResult,
    bootstrap,
    bootstrap_by,
    bootstrap_ci,
    size_bucket,
)
from soebench.metrics.clip_score import CLIPScore, region_pixels
from soebench.metrics.features import (
    INCEPTION_ENV,
    ClipEncoder,
    ClipSpec,
    InceptionExtractor,
    clip_available,
    find_inception_weights,
    inception_available,
    load_clip,
    load_inception,
    resolve_clip,
)
from soebench.metrics.fid import FID, KID, DistanceResult, extract_features
from soebench.metrics.functional import (
    DEFAULT_DILATION_AT_512,
    background_keep_mask,
    clip_score,
    frechet_distance,
    kernel_inception_distance,
    masked_mse,
    masked_psnr,
    masked_ssim,
)
from soebench.metrics.preprocess import (
    CLIP_PREPROCESS_MODE,
    FID_RESIZE_DESCRIPTION,
    FID_RESIZE_MODE,
    clean_resize,
    crop_box,
)
from soebench.metrics.preservation import PRESERVATION_METRICS, BackgroundPreservation, background_preservation
from soebench.metrics.registry import (
    METRIC_NAMES,
    METRICS,
    MetricAvailability,
    MetricInfo,
    available_metrics,
    check_metric_names,
    resolve_metrics,
)

__all__ = [
    "BackgroundPreservation",
    "BootstrapResult",
    "CLIPScore",
    "CLIP_PREPROCESS_MODE",
    "ClipEncoder",
    "ClipSpec",
    "DEFAULT_DILATION_AT_512",
    "DistanceResult",
    "FID",
    "FID_RESIZE_DESCRIPTION",
    "FID_RESIZE_MODE",
    "INCEPTION_ENV",
    "InceptionExtractor",
    "KID",
    "METRICS",
    "METRIC_NAMES",
    "MetricAvailability",
    "MetricInfo",
    "PRESERVATION_METRICS",
    "SIZE_BUCKETS",
    "SIZE_BUCKET_NAMES",
    "available_metrics",
    "background_keep_mask",
    "background_preservation",
    "bootstrap",
    "bootstrap_by",
    "bootstrap_ci",
    "check_metric_names",
    "clean_resize",
    "clip_available",
    "clip_score",
    "crop_box",
    "extract_features",
    "find_inception_weights",
    "frechet_distance",
    "inception_available",
    "kernel_inception_distance",
    "load_clip",
    "load_inception",
    "masked_mse",
    "masked_psnr",
    "masked_ssim",
    "region_pixels",
    "resolve_clip",
    "resolve_metrics",
    "size_bucket",
]
