"""SO-LoRA: peft LoRA adapters on chosen blocks of the inpainting UNet, and their (de)serialisation.

SOEDiff adapts the mid block, ``down_blocks`` 1-3 and ``up_blocks`` 0-2 of SD's UNet and leaves the
highest-resolution blocks (``down_blocks.0``, ``up_blocks.3``) frozen. :func:`default_lora_blocks`
states that rule for any depth: every down block but the first, the mid block, every up block but
the last. The tiny test UNet (two levels) thus gets ``down_blocks.1``, ``mid_block`` and ``up_blocks.0``.
Target modules are found by walking ``unet.named_modules()`` and keeping Linear/Conv2d layers inside
those blocks whose name ends with one of the configured suffixes; peft gets the full names.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from soebench.errors import ConfigError


def default_lora_blocks(unet) -> list[str]:
    """SOEDiff's rule: all blocks except the highest-resolution down and up blocks."""
    blocks = [f"down_blocks.{i}" for i in range(1, len(unet.down_blocks))]
    if getattr(unet, "mid_block", None) is not None:
        blocks.append("mid_block")
    blocks += [f"up_blocks.{i}" for i in range(len(unet.up_blocks) - 1)]
    return blocks


def lora_target_modules(unet, blocks: Sequence[str], suffixes: Sequence[str]) -> list[str]:
    """Full names of the Linear/Conv2d modules inside ``blocks`` whose names end with a suffix."""
    from torch import nn

    names = {name for name, _ in unet.named_modules()}
    unknown = [b for b in blocks if b not in names]
    if unknown:
        available = default_lora_blocks(unet) + ["down_blocks.0", f"up_blocks.{len(unet.up_blocks) - 1}"]
        raise ConfigError(f"lora.blocks {unknown} do not exist in this UNet", hint=f"blocks here: {sorted(set(available))}")
    found: list[str] = []
    for name, module in unet.named_modules():
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            continue
        if not any(name.startswith(block + ".") for block in blocks):
            continue
        if any(name == s or name.endswith("." + s) for s in suffixes):
            found.append(name)
    if not found:
        raise ConfigError(f"no LoRA target modules matching {list(suffixes)} in UNet blocks {list(blocks)}")
    return found


def so_lora_config(targets: Sequence[str], rank: int, alpha: float, dropout: float = 0.0):
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, init_lora_weights="gaussian",
                      target_modules=list(targets))


def add_so_lora(unet, settings) -> list[str]:
    """Add the SO-LoRA adapter (``settings``: :class:`soediff.config.LoraSettings`); return its targets.

    Base weights are frozen; only the adapter's parameters require grad.
    """
    blocks = settings.blocks or default_lora_blocks(unet)
    targets = lora_target_modules(unet, blocks, settings.target_modules)
    unet.requires_grad_(False)
    unet.add_adapter(so_lora_config(targets, settings.rank, settings.alpha, settings.dropout))
    return targets


def lora_parameters(unet) -> list:
    return [p for n, p in unet.named_parameters() if "lora_" in n]


@contextlib.contextmanager
def adapters_disabled(unet) -> Iterator[None]:
    """Run the base model: the teacher is the same weights with the adapters switched off."""
    unet.disable_adapters()
    try:
        yield
    finally:
        unet.enable_adapters()


def lora_state_dict(unet) -> dict[str, Any]:
    """The adapter weights (peft key names, adapter name stripped)."""
    from peft.utils import get_peft_model_state_dict

    return get_peft_model_state_dict(unet)


def load_lora_state_dict(unet, state: dict[str, Any]) -> None:
    from peft.utils import set_peft_model_state_dict

    result = set_peft_model_state_dict(unet, state)
    unexpected = getattr(result, "unexpected_keys", None) or []
    if unexpected:
        raise ConfigError(f"LoRA checkpoint has {len(unexpected)} keys this UNet lacks (first: {unexpected[0]})")
