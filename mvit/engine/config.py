"""The training configuration: a tree of dataclasses, loaded from a YAML recipe plus ``key=value``
overrides, and checked completely before anything runs.

A recipe (``mvit/recipes/NAME.yaml`` or any YAML file) has up to five sections, ``model``, ``data``,
``augment``, ``optim`` and ``run``; omitted keys keep the defaults below, which are the paper's
Kinetics recipe (paper Appendix D). A recipe may start with ``base: OTHER_RECIPE`` to inherit
everything from another one and change a few keys. Overrides use dotted keys, e.g.
``optim.epochs=5 model.config.drop_path=0.1 run.precision=bf16``; values are parsed as YAML.

An unknown key or a value of the wrong type raises `ConfigError`, naming the key and the closest
valid key; a value out of its range (a negative weight decay, a ratio above 1, a NaN) names the key and
the range.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Union

import yaml

RECIPE_DIR = Path(__file__).resolve().parent.parent / "recipes"


class ConfigError(ValueError):
    """A user's mistake the command line reports as one ``error: ...`` line: a recipe or an override names
    an unknown key or holds a bad value, or a file or folder the run needs is unusable (an unreadable
    checkpoint, an output folder in use, a full disk)."""


def key(default: Any, help: str, choices: Optional[Callable[[], list]] = None) -> Any:
    """A config key: a dataclass field with its default and its ``train --help`` text in the field's metadata
    (``choices``: a function returning the valid values, for a list kept elsewhere)."""
    metadata = {"help": help} if choices is None else {"help": help, "choices": choices}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def _task_names() -> list[str]:
    """The keys of `mvit.engine.tasks.TASKS` (imported here, late: that module imports this one)."""
    from .tasks import TASKS

    return list(TASKS)


@dataclass
class ModelSection:
    """Which model to build and where its initial weights come from."""

    name: str = key("mvit_b_16x4", "a preset of mvit.list_models()")
    config: dict = key({}, "MViTConfig fields overriding the preset")
    pretrained: Optional[str] = key(None, "checkpoint to start from (fine-tuning); None = random init")
    pretrained_source: Literal["auto", "mvit", "torchvision", "pyslowfast", "pytorchvideo"] = key(
        "auto", "its layout (auto: detected from the key names, see mvit.convert)"
    )
    task: str = key(
        "classification",
        "what the head learns and how it is scored, a key of mvit.engine.tasks.TASKS: classification (softmax, "
        "top-1/top-5), multilabel (per-class sigmoid, mAP) or detection (per-box sigmoid on RoIs, AVA frame-mAP)",
        choices=_task_names,
    )


def _dataset_names() -> list[str]:
    """The keys of `mvit.engine.inputs.DATASETS` (imported here, late: that module imports this one)."""
    from .inputs import DATASETS

    return list(DATASETS)


@dataclass
class DataSection:
    """The dataset. Clip length and crop size come from ``model.config.input_size``."""

    dataset: str = key("video", "a key of mvit.engine.inputs.DATASETS", choices=_dataset_names)
    root: Optional[str] = key(None, "folder of the dataset (video: holds train.csv and val.csv)")
    sampling_rate: int = key(4, "tau: frame stride of a clip")
    num_clips: int = key(5, "multi-view testing: clips uniformly spaced in time ...")
    num_crops: int = key(1, "... times spatial crops (views = num_clips * num_crops)")
    train_size: Optional[int] = key(None, "synthetic: clips to generate; None = the dataset's default")
    val_size: Optional[int] = key(None, "synthetic: validation clips; None = the dataset's default")
    batch_size: int = key(4, "clips per process per forward pass")
    eval_batch_size: Optional[int] = key(None, "None = batch_size")
    num_workers: int = key(4, "loader processes per training process")
    shuffle: bool = key(True, "shuffle the training order each epoch (deterministic from run.seed and the epoch)")
    options: dict = key({}, "further keyword arguments of the dataset class")


@dataclass
class AugmentSection:
    """Batch-level augmentation and targets (paper Appendix D)."""

    mixup_alpha: float = key(0.8, "Mixup on half the batch ...")
    cutmix_alpha: float = key(1.0, "... CutMix on the other half (0 and 0 turn both off)")
    switch_prob: float = key(0.5, "share of the batch mixed by CutMix rather than Mixup")
    label_smoothing: float = key(0.1, "target 1 - eps + eps/K on the label, eps/K elsewhere")
    repeat_aug: int = key(2, "repeated augmentation: copies of each clip per epoch")
    transform: Union[Literal["default", "none"], dict] = key(
        "default",
        "per-clip training augmentation: \"default\": the dataset's own (the paper's for videos, DeiT's for "
        'ImageNet, none for digits); "none"; or fields of mvit.data.Augmentation, e.g. {flip: false}',
    )


@dataclass
class OptimSection:
    """The optimiser (AdamW from scratch; SGD for the paper's SSv2 fine-tuning) and its per-iteration
    linear warmup and half-period cosine schedule."""

    name: Literal["adamw", "sgd"] = key("adamw", "the optimiser")
    lr: float = key(1.6e-3, "peak learning rate for a global batch of lr_reference_batch")
    lr_reference_batch: int = key(512, "the lr is scaled linearly by global_batch / lr_reference_batch")
    final_lr_ratio: float = key(0.01, "cosine ends at lr * final_lr_ratio (1.6e-5 for K400)")
    warmup_start_ratio: float = key(0.01, "warmup starts at lr * warmup_start_ratio")
    warmup_epochs: float = key(30.0, "epochs of linear warmup (updated every iteration) before the cosine")
    epochs: int = key(200, "training epochs")
    weight_decay: float = key(0.05, "not applied to model.no_weight_decay() parameters")
    betas: tuple[float, float] = key((0.9, 0.999), "AdamW")
    eps: float = key(1e-8, "AdamW")
    momentum: float = key(0.9, "SGD (Nesterov off)")
    clip_grad_norm: Optional[float] = key(1.0, "L2 norm; None turns clipping off")
    accum_steps: int = key(1, "micro-batches accumulated per optimizer step")


@dataclass
class RunSection:
    """Where and how the run executes."""

    output_dir: Optional[str] = key(None, "checkpoints, logs, config; the command line's --output-dir")
    seed: int = key(0, "seeds the initial weights, the sample order, every sample's augmentation, dropout and Mixup")
    device: Literal["auto", "cpu", "cuda"] = key("auto", "auto: cuda when available")
    precision: Literal["fp32", "bf16", "fp16"] = key("fp32", "autocast dtype; fp16 adds a grad scaler (CUDA)")
    compile: bool = key(False, "torch.compile the model")
    fused_ops: Union[Literal["auto"], bool] = key(
        "auto",
        "train with mvit.fused's modules (same function and weights, less memory, faster backward on the CPU): "
        "true, false, or auto (true when training on the CPU)",
    )
    checkpoint_every_steps: int = key(0, "also checkpoint every N optimizer steps (0: each epoch only)")
    eval_every_epochs: int = key(1, "clip-level validation (0: never during training)")
    multi_view_eval: bool = key(True, "video-level multi-view test after the last epoch")
    log_every_steps: int = key(10, "optimizer steps between JSON-lines records")
    progress: bool = key(True, "tqdm bar on rank 0")
    tensorboard: bool = key(False, "needs the tensorboard package")


@dataclass
class TrainConfig:
    """A complete training run: model, data, augmentation, optimisation, execution."""

    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    augment: AugmentSection = field(default_factory=AugmentSection)
    optim: OptimSection = field(default_factory=OptimSection)
    run: RunSection = field(default_factory=RunSection)

    def to_dict(self) -> dict:
        """Plain data (lists instead of tuples), ready for YAML or JSON."""
        return _plain(dataclasses.asdict(self))


def list_recipes() -> list[str]:
    """Names of the recipes shipped in ``mvit/recipes``."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def load_config(
    source: Union[str, Path, dict, None] = None, overrides: tuple[str, ...] | list[str] = ()
) -> TrainConfig:
    """Build a `TrainConfig` from a recipe name, a YAML path or a dict, then apply ``key=value`` overrides.

    >>> cfg = load_config("cpu_synthetic_mvit", ["optim.epochs=2", "model.config.drop_path=0.0"])
    """
    raw = {} if source is None else _read(source, seen=())
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. optim.lr=1e-3)")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as err:
            raise ConfigError(
                f"override {item!r}: the value is not valid YAML ({_yaml_problem(err)}); "
                "quote strings and close brackets, e.g. optim.betas=[0.9,0.999]"
            ) from None
        _set_dotted(raw, key.strip(), value)
    cfg = _build(TrainConfig, raw, prefix="")
    _check_model_overrides(cfg.model)
    _check_values(cfg)
    return cfg


def save_config(cfg: TrainConfig, path: Union[str, Path]) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


# ----------------------------------------------------------------------------------------------------
# reading and merging
# ----------------------------------------------------------------------------------------------------


def _read(source: Union[str, Path, dict], seen: tuple[str, ...]) -> dict:
    if isinstance(source, dict):
        raw = copy.deepcopy(source)
        name = "<dict>"
    else:
        path = _resolve(source)
        name = str(path)
        if name in seen:
            raise ConfigError(f"recipe {name} inherits from itself through 'base:' ({' -> '.join(seen)})")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(
                f"{path}{_yaml_where(err)} is not valid YAML: {_yaml_problem(err)}; fix the file "
                "(sections of 'key: value' lines)"
            ) from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path} is not a text file; --config takes a YAML recipe") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path} must hold a mapping of sections, not {type(raw).__name__}")
    base = raw.pop("base", None)
    if base is None:
        return raw
    return _merge(_read(base, seen + (name,)), raw)


def _yaml_where(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    return f", line {mark.line + 1}, column {mark.column + 1}," if mark is not None else ""


def _yaml_problem(err: yaml.YAMLError) -> str:
    return " ".join(str(getattr(err, "problem", None) or err).split())


def _resolve(source: Union[str, Path]) -> Path:
    path = Path(source)
    if path.is_file():
        return path
    recipe = RECIPE_DIR / f"{source}.yaml"
    if recipe.is_file():
        return recipe
    close = difflib.get_close_matches(str(source), list_recipes(), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(
        f"config {str(source)!r} is neither a YAML file nor a shipped recipe.{hint} "
        f"Recipes: {', '.join(list_recipes())}"
    )


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _set_dotted(raw: dict, key: str, value: Any) -> None:
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {part!r} holds a value, not a section")
        node = child
    node[parts[-1]] = value


# ----------------------------------------------------------------------------------------------------
# type checking
# ----------------------------------------------------------------------------------------------------


def _build(cls: type, raw: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or "the config"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping of keys to values, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in raw if k not in names]
    if unknown:
        key = unknown[0]
        raise ConfigError(
            f"unknown config key '{prefix}{key}'{_suggest(str(key), names, prefix)}; "
            f"valid keys in {where}: {', '.join(names)}"
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            values[key] = _build(hint, value, f"{prefix}{key}.")
            continue
        values[key] = _coerce(value, hint, f"{prefix}{key}")
        choices = _choices(fields[key])
        if choices is not None and values[key] not in choices:
            raise _not_one_of(f"{prefix}{key}", values[key], choices)
    return cls(**values)


def _choices(f: dataclasses.Field) -> Optional[list]:
    """The valid values of a field whose metadata names them (``"choices"``: a function returning them)."""
    choices = f.metadata.get("choices")
    return None if choices is None else list(choices())


def _not_one_of(key: str, value: Any, options: list) -> ConfigError:
    return ConfigError(
        f"config key {key!r} must be one of {options}, got {value!r}" + _suggest(str(value), [str(a) for a in options])
    )


def _suggest(key: str, options: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(key, options, n=1, cutoff=0.5)
    return f" (did you mean '{prefix}{close[0]}'?)" if close else ""


def type_name(hint: Any) -> str:
    """``int``, ``Optional[str]``, ``Literal['a', 'b']``: a type as a reader writes it."""
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__name__
    return str(hint).replace("typing.", "").replace("NoneType", "None")


def describe_keys() -> list[tuple[str, str, Any, str]]:
    """``(dotted key, type, default, help)`` for every key of `TrainConfig`, the help from the field's metadata."""
    rows = []
    for section in dataclasses.fields(TrainConfig):
        cls = typing.get_type_hints(TrainConfig)[section.name]
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
            choices = _choices(f)
            kind = type_name(hints[f.name] if choices is None else Literal[tuple(choices)])
            rows.append((f"{section.name}.{f.name}", kind, default, f.metadata["help"]))
    return rows


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check `value` against the type `hint`; return it converted (lists to tuples, ints to floats)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    bad = ConfigError(f"config key {key!r} must be {type_name(hint)}, got {value!r} ({type(value).__name__})")
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise bad
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                pass
        raise bad
    if origin is Literal:
        if value in args:
            return value
        raise _not_one_of(key, value, list(args))
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise bad from None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise bad
    if hint is str:
        if isinstance(value, str):
            return value
        raise bad
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise bad
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"config key {key!r} must hold {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if hint is dict or origin is dict:
        if isinstance(value, dict):
            return value
        raise bad
    raise TypeError(f"config key {key!r} has a type the loader does not know: {hint}")


def _check_model_overrides(model: ModelSection) -> None:
    """``model.name`` must be a preset and ``model.config`` must hold `MViTConfig` fields of the right type."""
    from ..configs import MViTConfig, get_config, list_models

    if model.name not in list_models():
        raise ConfigError(
            f"model.name={model.name!r} is not a model{_suggest(model.name, list_models())}; "
            f"known models: {', '.join(list_models())}"
        )
    hints = typing.get_type_hints(MViTConfig)
    checked = {}
    for key, value in model.config.items():
        if key not in hints:
            raise ConfigError(
                f"unknown config key 'model.config.{key}'{_suggest(str(key), list(hints), 'model.config.')}"
                f"; valid keys are the MViTConfig fields: {', '.join(hints)}"
            )
        checked[key] = _coerce(value, hints[key], f"model.config.{key}")
    for key in ("num_classes", "embed_dim", "num_heads", "in_channels"):
        if key in checked and checked[key] < 1:
            raise ConfigError(f"config key 'model.config.{key}' must be at least 1, got {checked[key]}")
    try:
        mvit_cfg = get_config(model.name, **checked)
    except ValueError as err:
        raise ConfigError(f"model.config: {err}") from None
    size, stride = mvit_cfg.input_size, mvit_cfg.patch_stride
    if any(s < 1 or n < 1 or n % s for n, s in zip(size, stride)) or min(mvit_cfg.patch_grid) < 1:
        example = [max(s, n // max(s, 1) * s) for n, s in zip(size, stride)]
        raise ConfigError(
            f"model.config.input_size={list(size)} cannot be tiled by {model.name}'s patch stride "
            f"{list(stride)} (kernel {list(mvit_cfg.patch_kernel)}): each of T, H, W must be a positive "
            f"multiple of the stride on its axis, e.g. {example}"
        )
    model.config = checked


def _check_values(cfg: TrainConfig) -> None:
    """Ranges the types cannot express: each failure names the key and its valid range."""
    for key, value in _floats(cfg):
        if not math.isfinite(value):
            raise ConfigError(f"config key {key!r} must be a finite number, got {value}")
    d, a, o, r = cfg.data, cfg.augment, cfg.optim, cfg.run
    at_least_1 = {
        "data.batch_size": d.batch_size,
        "data.num_clips": d.num_clips,
        "data.num_crops": d.num_crops,
        "data.sampling_rate": d.sampling_rate,
        "data.train_size": d.train_size,
        "data.val_size": d.val_size,
        "data.eval_batch_size": d.eval_batch_size,
        "augment.repeat_aug": a.repeat_aug,
        "optim.epochs": o.epochs,
        "optim.accum_steps": o.accum_steps,
        "optim.lr_reference_batch": o.lr_reference_batch,
        "run.log_every_steps": r.log_every_steps,
    }
    for key, value in at_least_1.items():
        if value is not None and value < 1:
            raise ConfigError(f"config key {key!r} must be at least 1, got {value}")
    not_negative = {
        "data.num_workers": d.num_workers,
        "run.eval_every_epochs": r.eval_every_epochs,
        "run.checkpoint_every_steps": r.checkpoint_every_steps,
        "run.seed": r.seed,
        "optim.warmup_epochs": o.warmup_epochs,
        "optim.weight_decay": o.weight_decay,
        "augment.mixup_alpha": a.mixup_alpha,
        "augment.cutmix_alpha": a.cutmix_alpha,
    }
    for key, value in not_negative.items():
        if value < 0:
            raise ConfigError(f"config key {key!r} must not be negative, got {value}")
    positive = {
        "optim.lr": o.lr,
        "optim.eps": o.eps,
        "optim.clip_grad_norm": o.clip_grad_norm,
        "model.config.norm_eps": cfg.model.config.get("norm_eps"),
    }
    for key, value in positive.items():
        if value is not None and value <= 0:
            hint = " (null turns clipping off)" if key == "optim.clip_grad_norm" else ""
            raise ConfigError(f"config key {key!r} must be positive{hint}, got {value}")
    ranges = {
        "optim.final_lr_ratio": (o.final_lr_ratio, "[0, 1]"),
        "optim.warmup_start_ratio": (o.warmup_start_ratio, "[0, 1]"),
        "augment.switch_prob": (a.switch_prob, "[0, 1]"),
        "augment.label_smoothing": (a.label_smoothing, "[0, 1)"),
        "optim.momentum": (o.momentum, "[0, 1)"),
        "optim.betas[0]": (o.betas[0], "[0, 1)"),
        "optim.betas[1]": (o.betas[1], "[0, 1)"),
    }
    for key, (value, interval) in ranges.items():
        if not (0.0 <= value <= 1.0 if interval == "[0, 1]" else 0.0 <= value < 1.0):
            raise ConfigError(f"config key {key!r} must lie in {interval}, got {value}")
    from .tasks import get_task

    get_task(cfg.model.task).check(cfg)  # settings the task cannot honour (e.g. Mixup for multilabel)
    if o.warmup_epochs >= o.epochs and o.warmup_epochs > 0:
        raise ConfigError(
            f"optim.warmup_epochs={o.warmup_epochs} must be shorter than "
            f"optim.epochs={o.epochs}; lower the warmup or train longer"
        )


def _floats(node: Any, prefix: str = "") -> list[tuple[str, float]]:
    """``(dotted key, value)`` of every float in a config (sections, tuples, dicts such as ``model.config``)."""
    if dataclasses.is_dataclass(node):
        node = {f.name: getattr(node, f.name) for f in dataclasses.fields(node)}
    if isinstance(node, dict):
        return [kv for key, value in node.items() for kv in _floats(value, f"{prefix}{key}.")]
    if isinstance(node, (list, tuple)):
        return [kv for i, value in enumerate(node) for kv in _floats(value, f"{prefix.rstrip('.')}[{i}].")]
    return [(prefix.rstrip("."), node)] if isinstance(node, float) else []


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
