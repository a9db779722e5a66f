"""The model of a run: a preset with overrides, optionally initialised from a pretrained checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from ..model import MViT, build_model
from .checkpoint import model_state
from .config import ModelSection

HEAD_PREFIX = "head."


def build_model_from_config(section: ModelSection) -> MViT:
    """``build_model(section.name, **section.config)``."""
    return build_model(section.name, **section.config)


def load_pretrained(model: MViT, path: str | Path, fmt: str = "mvit") -> list[str]:
    """Load the weights in `path` into `model` for fine-tuning; return the names left at their fresh init.

    `fmt`: ``"mvit"`` (a training checkpoint of this package or a state dict of `mvit.model.MViT`),
    ``"torchvision"`` (``mvit_v1_b`` weights), ``"pyslowfast"`` or ``"pytorchvideo"`` (converted by
    `mvit.convert`). A classifier head whose shape differs from the model's (another number of classes)
    is skipped and stays freshly initialised; any other missing, unexpected or mis-shaped weight is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model.pretrained={str(path)!r} does not exist; download the checkpoint first "
                                "(see the recipe's comments) or set model.pretrained=null")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if fmt == "mvit":
        state = model_state(state)
    else:
        from .. import convert

        state = getattr(convert, f"from_{fmt}")(model_state(state))
    own = model.state_dict()
    skipped = [k for k, v in state.items() if k.startswith(HEAD_PREFIX) and k in own and v.shape != own[k].shape]
    state = {k: v for k, v in state.items() if k not in skipped}
    missing = [k for k in own if k not in state and k not in skipped]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
              if k in own and v.shape != own[k].shape]
    if missing or unexpected or shapes:
        raise ValueError(f"{path} does not fit the model ({model.config.num_classes} classes, "
                         f"input {model.config.input_size}): missing {missing[:5]}, unexpected {unexpected[:5]}, "
                         f"shape mismatches {shapes[:5]}; check model.name, model.config and model.pretrained_format")
    model.load_state_dict(state, strict=False)
    return skipped
