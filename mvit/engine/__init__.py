"""Training and evaluation: the paper's recipe on one CPU, one GPU or many GPUs (``torchrun``).

>>> from mvit.engine import load_config, train
>>> history = train(load_config("cpu_synthetic_mvit", ["run.output_dir=runs/demo"]))
"""

from .checkpoint import load_checkpoint, save_checkpoint
from .config import ConfigError, TrainConfig, list_recipes, load_config
from .metrics import evaluate, multi_view_scores
from .trainer import NonFiniteLossError, TrainingInterrupted, evaluate_checkpoint, train

__all__ = [
    "ConfigError",
    "NonFiniteLossError",
    "TrainConfig",
    "TrainingInterrupted",
    "evaluate",
    "evaluate_checkpoint",
    "list_recipes",
    "load_checkpoint",
    "load_config",
    "multi_view_scores",
    "save_checkpoint",
    "train",
]
