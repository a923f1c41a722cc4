"""``soebench-accelerate``: accelerate's own command line, with the torchvision shim applied first.

``accelerate launch`` imports timm and therefore torchvision before any of our code runs; where
torchvision's compiled ops do not match torch (the CPU torch + CUDA torchvision wheels of these
machines, see :mod:`soebench.compat`) it dies with ``operator torchvision::nms does not exist``.
This entry point registers the stand-in schemas when (and only when) they are needed, then hands
over to accelerate unchanged, so every accelerate subcommand and flag works as documented::

    soebench-accelerate launch --num_processes 2 -m soebench evaluate ...
    soebench-accelerate launch -m soediff train ...

On a normal CPU or CUDA install plain ``accelerate`` works and this is the same program.
"""

from __future__ import annotations


def main() -> None:
    from soebench.compat import ensure_torchvision_ops

    ensure_torchvision_ops()
    from accelerate.commands.accelerate_cli import main as accelerate_main

    accelerate_main()


if __name__ == "__main__":
    main()
