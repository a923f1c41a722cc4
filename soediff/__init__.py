"""soediff: SO-LoRA + cross-scale score distillation + VAE decoder fine-tuning for small objects."""

__version__ = "0.2.0"
