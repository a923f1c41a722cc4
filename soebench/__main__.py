"""``python -m soebench`` (and ``accelerate launch -m soebench``)."""

from soebench.cli.app import run

run()
