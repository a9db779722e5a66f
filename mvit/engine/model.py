"""The model of a run: a preset with overrides, optionally initialised from a pretrained checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from .. import convert
from ..model import MViT, build_model
from .config import ModelSection

HEAD = ("head.weight", "head.bias")


def build_model_from_config(section: ModelSection) -> MViT:
    """``build_model(section.name, **section.config)``."""
    return build_model(section.name, **section.config)


def load_pretrained(model: MViT, path: str | Path, source: str = "auto") -> list[str]:
    """Initialise `model` from the checkpoint at `path` for fine-tuning; return the names of the weights
    left at their fresh initialisation.

    `source`: the checkpoint's layout, ``"auto"`` (detected from its keys) or one of
    `mvit.convert.SOURCES` (``"torchvision"`` for ``mvit_v1_b`` weights). A classifier head of another
    number of classes (Kinetics-400 weights fine-tuned on UCF-101) stays freshly initialised; every other
    weight must fit exactly (`mvit.convert.load_pretrained` names what does not).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model.pretrained={str(path)!r} does not exist; download the checkpoint first "
                                "(see the recipe's comments) or set model.pretrained=null")
    state = convert.unwrap(torch.load(path, map_location="cpu", weights_only=True))
    if source == "auto":
        source = convert.detect_source(state)
    if source != "mvit":
        state = getattr(convert, f"from_{source}")(state)
    own = model.state_dict()
    fresh = [k for k in HEAD if k in state and k in own and state[k].shape != own[k].shape]
    state.update({k: own[k] for k in fresh})
    convert.load_pretrained(model, state, source="mvit")
    return fresh
