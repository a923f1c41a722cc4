"""Feature networks for the metrics, loaded only from local files (never downloaded here).

- CLIP (open_clip): :mod:`soebench.metrics.clip_model` -- :class:`ClipSpec`, :func:`load_clip`.
- FID Inception: :mod:`soebench.metrics.inception` -- :func:`load_inception` and its search order.

Both raise :class:`~soebench.errors.MissingWeightsError` with a how-to when weights are missing,
and both are injected into the metric classes, so tests use tiny stand-ins saved to disk.
"""

from soebench.metrics.clip_model import (
    DEFAULT_CLIP_MODEL,
    DEFAULT_CLIP_PRETRAINED,
    ClipEncoder,
    ClipSpec,
    ResolvedClip,
    clip_available,
    clip_weights_howto,
    load_clip,
    resolve_clip,
)
from soebench.metrics.inception import (
    CLEANFID_INCEPTION_NAME,
    FID_HELPER_INCEPTION_NAME,
    INCEPTION_ENV,
    InceptionExtractor,
    find_inception_weights,
    inception_available,
    inception_candidates,
    inception_howto,
    load_inception,
)

__all__ = [
    "CLEANFID_INCEPTION_NAME",
    "DEFAULT_CLIP_MODEL",
    "DEFAULT_CLIP_PRETRAINED",
    "FID_HELPER_INCEPTION_NAME",
    "INCEPTION_ENV",
    "ClipEncoder",
    "ClipSpec",
    "InceptionExtractor",
    "ResolvedClip",
    "clip_available",
    "clip_weights_howto",
    "find_inception_weights",
    "inception_available",
    "inception_candidates",
    "inception_howto",
    "load_clip",
    "load_inception",
    "resolve_clip",
]
