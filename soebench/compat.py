"""Make ``import torchvision`` work when its compiled ops do not match the installed torch.

The torchvision 0.28.0 wheel on PyPI is built against CUDA torch; with the CPU build of torch
2.13.0 its ``_C`` extension fails to load, and ``import torchvision`` then dies in
``torchvision/_meta_registrations.py`` with ``RuntimeError: operator torchvision::nms does not
exist`` -- which takes open_clip, clean-fid, peft, transformers' CLIP and diffusers down with it.

:func:`ensure_torchvision_ops` is called before anything that imports torchvision. It does nothing
when the ops are already registered (a normal CPU or CUDA install, or a second call). Only when
torchvision's own extension cannot be loaded does it define the op *schemas* (so the meta
registrations import) plus a pure-torch CPU kernel for ``nms``; every other op raises a clear
error if it is actually called. Nothing in soebench calls those detection ops.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

log = logging.getLogger(__name__)

# Schemas as torchvision's C++ sources declare them (torchvision/csrc/ops/*.cpp).
TORCHVISION_OP_SCHEMAS: dict[str, str] = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "roi_align": (
        "roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
        "SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor"
    ),
    "_roi_align_backward": (
        "_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, SymInt pooled_height, "
        "SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width, "
        "int sampling_ratio, bool aligned) -> Tensor"
    ),
    "ps_roi_align": (
        "ps_roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
        "SymInt pooled_width, int sampling_ratio) -> (Tensor, Tensor)"
    ),
    "_ps_roi_align_backward": (
        "_ps_roi_align_backward(Tensor grad, Tensor rois, Tensor channel_mapping, float spatial_scale, "
        "SymInt pooled_height, SymInt pooled_width, int sampling_ratio, SymInt batch_size, "
        "SymInt channels, SymInt height, SymInt width) -> Tensor"
    ),
    "roi_pool": (
        "roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
        "SymInt pooled_width) -> (Tensor, Tensor)"
    ),
    "_roi_pool_backward": (
        "_roi_pool_backward(Tensor grad, Tensor rois, Tensor argmax, float spatial_scale, "
        "SymInt pooled_height, SymInt pooled_width, SymInt batch_size, SymInt channels, "
        "SymInt height, SymInt width) -> Tensor"
    ),
    "ps_roi_pool": (
        "ps_roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
        "SymInt pooled_width) -> (Tensor, Tensor)"
    ),
    "_ps_roi_pool_backward": (
        "_ps_roi_pool_backward(Tensor grad, Tensor rois, Tensor channel_mapping, float spatial_scale, "
        "SymInt pooled_height, SymInt pooled_width, SymInt batch_size, SymInt channels, "
        "SymInt height, SymInt width) -> Tensor"
    ),
    "qroi_align": (
        "qroi_align(Tensor input, Tensor rois, float input_scale, int input_zero_point, "
        "float rois_scale, int rois_zero_point, float spatial_scale, SymInt pooled_height, "
        "SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor"
    ),
    "deform_conv2d": (
        "deform_conv2d(Tensor input, Tensor weight, Tensor offset, Tensor mask, Tensor bias, "
        "SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, "
        "SymInt dilation_w, SymInt groups, SymInt offset_groups, bool use_mask) -> Tensor"
    ),
    "_deform_conv2d_backward": (
        "_deform_conv2d_backward(Tensor grad, Tensor input, Tensor weight, Tensor offset, Tensor mask, "
        "Tensor bias, SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, "
        "SymInt dilation_w, SymInt groups, SymInt offset_groups, bool use_mask) "
        "-> (Tensor, Tensor, Tensor, Tensor, Tensor)"
    ),
}

_state: dict[str, object] = {"done": False, "stand_in": False, "library": None}


def _nms_cpu(dets, scores, iou_threshold: float):
    """Greedy non-maximum suppression, the reference algorithm of torchvision.ops.nms."""
    import torch

    if dets.numel() == 0:
        return torch.empty((0,), dtype=torch.long, device=dets.device)
    x1, y1, x2, y2 = dets.unbind(1)
    areas = (x2 - x1) * (y2 - y1)
    order = scores.argsort(descending=True)
    keep: list[int] = []
    suppressed = torch.zeros(dets.shape[0], dtype=torch.bool)
    for idx in order.tolist():
        if suppressed[idx]:
            continue
        keep.append(idx)
        xx1 = torch.maximum(x1[idx], x1)
        yy1 = torch.maximum(y1[idx], y1)
        xx2 = torch.minimum(x2[idx], x2)
        yy2 = torch.minimum(y2[idx], y2)
        inter = (xx2 - xx1).clamp(min=0) * (yy2 - yy1).clamp(min=0)
        iou = inter / (areas[idx] + areas - inter)
        suppressed |= iou > iou_threshold
    return torch.tensor(keep, dtype=torch.long, device=dets.device)


def _unavailable(name: str):
    def kernel(*args, **kwargs):
        raise RuntimeError(
            f"torchvision::{name} is unavailable: torchvision's compiled ops do not match the installed "
            "torch (soebench registered stand-in schemas so torchvision imports). Install a torchvision "
            "build that matches your torch to use detection ops."
        )

    return kernel


def _ops_registered() -> bool:
    import torch

    try:
        torch.ops.torchvision.nms.default  # noqa: B018 - attribute access resolves the schema
        return True
    except (AttributeError, RuntimeError):
        return False


def _try_load_extension() -> bool:
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    for folder in spec.submodule_search_locations:
        for candidate in sorted(Path(folder).glob("_C*.so")) + sorted(Path(folder).glob("_C*.pyd")):
            try:
                torch.ops.load_library(str(candidate))
                return True
            except (OSError, RuntimeError, ImportError) as exc:
                log.debug("torchvision extension %s did not load: %s", candidate, exc)
    return False


def ensure_torchvision_ops() -> bool:
    """Make ``import torchvision`` safe. Returns True when stand-in schemas had to be registered."""
    if _state["done"]:
        return bool(_state["stand_in"])
    if importlib.util.find_spec("torchvision") is None or _ops_registered() or _try_load_extension():
        _state["done"] = True
        return False
    import torch

    lib = torch.library.Library("torchvision", "DEF")
    for name, schema in TORCHVISION_OP_SCHEMAS.items():
        lib.define(schema)
        kernel = _nms_cpu if name == "nms" else _unavailable(name)
        lib.impl(name, kernel, "CPU")
    _state.update(done=True, stand_in=True, library=lib)  # keep the Library alive
    log.info("torchvision compiled ops unavailable; registered stand-in schemas")
    return True
