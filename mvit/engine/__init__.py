"""Training and evaluation: the paper's recipe on one CPU, one GPU or many GPUs (``torchrun``).

>>> from mvit.engine import load_config, train
>>> history = train(load_config("cpu_synthetic_mvit", ["run.output_dir=runs/demo"]))

What a run learns and how it is scored (loss, view pooling, metric) is its task, ``model.task``: see
`mvit.engine.tasks` (`get_task`, `TASKS`).
"""

from .checkpoint import load_checkpoint, save_checkpoint
from .config import ConfigError, TrainConfig, list_recipes, load_config
from .metrics import average_precision, evaluate, mean_average_precision, multi_view_scores
from .tasks import TASKS, Task, get_task
from .trainer import NonFiniteLossError, TrainingInterrupted, evaluate_checkpoint, train

__all__ = [
    "TASKS",
    "ConfigError",
    "NonFiniteLossError",
    "Task",
    "TrainConfig",
    "TrainingInterrupted",
    "average_precision",
    "evaluate",
    "evaluate_checkpoint",
    "get_task",
    "list_recipes",
    "load_checkpoint",
    "load_config",
    "mean_average_precision",
    "multi_view_scores",
    "save_checkpoint",
    "train",
]
