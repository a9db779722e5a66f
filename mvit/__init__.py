"""mvit: Multiscale Vision Transformers (Fan et al., ICCV 2021) in a small PyTorch package."""

from __future__ import annotations

import os

from .configs import MViTConfig, block_schedule, get_config, list_models
from .model import MViT, build_model

__version__ = "0.1.0"
__all__ = ["MViT", "MViTConfig", "block_schedule", "build_model", "get_config", "list_models", "profile", "__version__"]

PROFILES = ("cpu", "gpu")


def profile() -> str:
    """``"gpu"`` when CUDA is available, else ``"cpu"``; the environment variable ``MVIT_PROFILE``
    overrides it. The notebooks size their experiments from it; the code they run is the same."""
    forced = os.environ.get("MVIT_PROFILE", "").strip().lower()
    if forced:
        if forced not in PROFILES:
            raise ValueError(f"MVIT_PROFILE={forced!r} is not one of {PROFILES}; unset it or pick one")
        return forced
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"
