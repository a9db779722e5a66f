"""The network of a run: a preset with overrides, optionally initialised from a pretrained checkpoint."""

from __future__ import annotations

from pathlib import Path

from .. import convert
from ..model import MViT
from .config import ConfigError, ModelSection


def build_model_from_config(section: ModelSection) -> MViT:
    """The network of ``model.task`` (`mvit.engine.tasks.Task.build_model`): ``build_model(section.name,
    **section.config)``, or for detection the `mvit.detection.MViTDetector` of that preset (an MViT, same
    state dict)."""
    from .tasks import get_task

    return get_task(section.task).build_model(section.name, section.config)


def load_pretrained(model: MViT, path: str | Path, source: str = "auto") -> list[str]:
    """Initialise `model` for fine-tuning from ``model.pretrained`` (`path`) with ``model.pretrained_source``
    (`source`): `mvit.convert.load_pretrained` with ``new_head=True``, so a classifier head of another number
    of classes (Kinetics-400 weights fine-tuned on UCF-101) stays freshly initialised; returns the names of
    the weights left fresh. Every other weight must fit exactly (`mvit.convert.CheckpointError` names what
    does not); a missing file is a `ConfigError` naming the key.
    """
    if not Path(path).is_file():
        raise ConfigError(
            f"model.pretrained={str(path)!r} is not a file; download the checkpoint first "
            "(see the recipe's comments) or set model.pretrained=null"
        )
    return convert.load_pretrained(model, path, source, new_head=True)
