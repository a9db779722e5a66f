"""What a run records: every metric as JSON lines (``metrics.jsonl``), optionally TensorBoard, and the
environment it ran in (``environment.json``), all beside the checkpoints."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from pathlib import Path

import torch

from .config import ConfigError


class MetricLog:
    """Appends one JSON object per record to ``output_dir/metrics.jsonl``; mirrors the scalars to
    TensorBoard (``output_dir/tensorboard``) when asked. Only rank 0 should hold one."""

    def __init__(self, output_dir: Path, tensorboard: bool = False) -> None:
        self.path = Path(output_dir) / "metrics.jsonl"
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # checked by require_tensorboard

            self.writer = SummaryWriter(str(Path(output_dir) / "tensorboard"))

    def write(self, kind: str, **values) -> None:
        """One record; ``values`` must include ``step`` (the optimizer step, TensorBoard's x axis)."""
        record = {"kind": kind, **{k: _json_value(v) for k, v in values.items()}}
        step = values["step"]
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(f"{kind}/{key}", value, step)

    def size(self) -> int:
        """Bytes in ``metrics.jsonl`` now (a checkpoint records it, see `truncate`)."""
        return self.path.stat().st_size if self.path.is_file() else 0

    def truncate(self, size: int) -> None:
        """Cut ``metrics.jsonl`` back to `size` bytes: on resume, the records written after the checkpoint
        was taken are dropped, since the resumed run writes them again (TensorBoard files are not cut)."""
        if self.path.is_file() and self.path.stat().st_size > size:
            os.truncate(self.path, size)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def require_tensorboard() -> None:
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        raise ConfigError(
            "run.tensorboard=true needs the tensorboard package: pip install tensorboard "
            "(or set run.tensorboard=false; metrics.jsonl holds every metric anyway)"
        ) from None


def environment(world_size: int, device: torch.device) -> dict:
    """Versions and hardware, saved as ``environment.json`` beside the checkpoints."""
    import numpy
    import torchvision

    from .. import __version__

    env = {
        "mvit": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "world_size": world_size,
        "cuda": torch.version.cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
    }
    if torch.cuda.is_available():
        env["cudnn"] = torch.backends.cudnn.version()
    return env


def json_safe(value):
    """`value` (nested dicts, lists, tuples) with every NaN or infinite float replaced by None: valid JSON,
    which has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _json_value(value):
    if isinstance(value, torch.Tensor):
        value = value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
