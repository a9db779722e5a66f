"""The command line: ``python -m mvit train | eval | flops | convert | recipes``.

    python -m mvit train --config cpu_synthetic_mvit --output-dir runs/demo optim.epochs=2
    torchrun --nproc_per_node 8 -m mvit train --config k400_mvit_b_16x4 --output-dir runs/k400 data.root=K400
    python -m mvit eval --config k400_mvit_b_16x4 --checkpoint runs/k400/checkpoint.pt data.root=K400
    python -m mvit flops mvit_b_16x4
    python -m mvit convert mvit_v1_b-dbeb1030.pth mvit_b_16x4_k400.pt --from torchvision --model mvit_b_16x4

Every subcommand documents its options under ``--help``; ``train --help`` also lists every config key.
A user's mistake (a bad key, value or path, an unreadable or unfitting checkpoint) ends with one line
``error: ...`` and exit code 2, checked before any work where it can be; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from . import convert
from .data.failures import TooManyFailures
from .engine.config import ConfigError, describe_keys, list_recipes, load_config
from .engine.log import json_safe
from .engine.tasks import get_task

EXIT_CONFIG = 2  # a bad config or argument (argparse uses 2 as well)
EXIT_NON_FINITE = 3  # the loss became NaN or infinite
# what a user's mistake raises: a config, a checkpoint or a path given on the command line (or in a recipe),
# a dataset with more unreadable files than it allows
USER_ERRORS = (
    ConfigError,
    convert.CheckpointError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    TooManyFailures,
)


def config_reference() -> str:
    """Every config key with its type and default, section by section (for ``train --help``)."""
    lines = [
        "config keys (key=value on the command line, values read as YAML; defaults are the paper's Kinetics recipe):"
    ]
    for key, kind, default, comment in describe_keys():
        lines.append(f"  {key} = {default!r}  [{kind}]" + (f"\n      {comment}" if comment else ""))
    lines.append(
        "  model.config.<field>: any MViTConfig field (see mvit.configs.MViTConfig), e.g. model.config.drop_path=0.1"
    )
    lines.append("  data.options.<name>: a further keyword argument of the dataset class")
    lines.append(f"recipes (mvit/recipes): {', '.join(list_recipes())}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="python -m mvit", description=__doc__, formatter_class=fmt)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", help="on a user error, print the Python traceback as well as the error line"
    )

    train = sub.add_parser(
        "train",
        parents=[common],
        help="train a model with a recipe (resumes if DIR holds a checkpoint)",
        description="Train with the paper's recipe on the CPU, one GPU or many (torchrun). "
        "Resumes automatically when DIR holds checkpoint.pt. Writes DIR/checkpoint.pt, "
        "metrics.jsonl, config.yaml, environment.json.",
        epilog=config_reference(),
        formatter_class=fmt,
    )
    train.add_argument(
        "--config", required=True, metavar="RECIPE_OR_FILE", help="a shipped recipe name (see below) or a YAML file"
    )
    train.add_argument("--output-dir", required=True, metavar="DIR", help="folder for checkpoints and logs")
    train.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides with dotted keys, e.g. optim.epochs=5 model.config.drop_path=0.1",
    )

    ev = sub.add_parser(
        "eval",
        parents=[common],
        help="evaluate a checkpoint: clip-level and video-level (multi-view) scores with the task's metric",
        description="Evaluate weights on the recipe's validation data: 'val' is clip-level "
        "(one centre clip per video), 'test' video-level (data.num_clips x data.num_crops views). "
        "The metric is the recipe's model.task's: top-1/top-5 for classification (softmax scores of the "
        "views averaged), mAP for multilabel (sigmoid scores max-pooled over the views). Prints JSON: "
        "the task, its metric and, per split, the metric first, then the other numbers.",
        formatter_class=fmt,
    )
    ev.add_argument("--config", required=True, metavar="RECIPE_OR_FILE", help="recipe name or YAML file")
    ev.add_argument(
        "--checkpoint",
        required=True,
        metavar="FILE",
        help="a training checkpoint.pt, a state dict, or torchvision / PySlowFast / pytorchvideo weights",
    )
    ev.add_argument(
        "--source",
        default="auto",
        choices=("auto", *convert.SOURCES),
        help="layout of the checkpoint's weights (default: detected from its keys)",
    )
    ev.add_argument(
        "--splits",
        default="val,test",
        metavar="LIST",
        help="comma-separated: val (clip-level), test (multi-view); default val,test",
    )
    ev.add_argument(
        "--output", metavar="FILE.json", help="also write the full results (per-class accuracy, confusion matrix) here"
    )
    ev.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, as for train")

    fl = sub.add_parser(
        "flops",
        parents=[common],
        help="parameters and GFLOPs (multiply-adds) of a model",
        description="Parameters and forward GFLOPs per view (one multiply-add = one FLOP, the "
        "paper's convention; conv, linear, matmul and attention counted, see mvit.complexity).",
        formatter_class=fmt,
    )
    fl.add_argument("model", metavar="MODEL", help="a preset of mvit.list_models()")
    fl.add_argument(
        "--input-size", type=int, nargs=3, metavar=("T", "H", "W"), help="clip size (default: the preset's input_size)"
    )
    fl.add_argument(
        "--blocks",
        action="store_true",
        help="also print a table of every block: token grids, channels, heads, params, GMACs",
    )
    fl.add_argument(
        "overrides", nargs="*", metavar="field=value", help="MViTConfig overrides, e.g. pool_mode=max num_classes=600"
    )

    cv = sub.add_parser(
        "convert",
        parents=[common],
        formatter_class=fmt,
        help="convert checkpoints between torchvision / PySlowFast / pytorchvideo and this package",
        description="Rename (and reshape) the weights of a checkpoint into this package's layout "
        "(--from) or from it into torchvision's (--to torchvision). With --model, the result is "
        "loaded strictly into that preset first, so a mismatch is reported before anything is written. "
        "Loading the reference configurations: see mvit.convert (for example PySlowFast's "
        "MVIT_B_32x3_CONV.yaml: --model mvit_b_24_32x3 num_classes=400 pool_kernel=stride+1; "
        "pytorchvideo 0.1.5: pool_norm_eps=1e-5).",
    )
    cv.add_argument("input", metavar="IN", help="checkpoint file to read (torch.save format)")
    cv.add_argument("output", metavar="OUT", help="state dict file to write")
    direction = cv.add_mutually_exclusive_group(required=True)
    direction.add_argument(
        "--from",
        dest="source",
        choices=("auto", *convert.SOURCES[1:]),
        help="the layout of IN, converted to this package's",
    )
    direction.add_argument(
        "--to", dest="target", choices=("torchvision",), help="convert IN (this package's layout) to this layout"
    )
    cv.add_argument("--model", metavar="MODEL", help="check the weights against this preset (recommended)")
    cv.add_argument("overrides", nargs="*", metavar="field=value", help="MViTConfig overrides for --model")

    sub.add_parser(
        "recipes", parents=[common], help="list the shipped recipes", description="List the recipes in mvit/recipes."
    )
    return parser


def _model_overrides(model: str, items: Sequence[str]) -> dict:
    """``field=value`` pairs for the preset `model`, checked like the ``model.config.*`` keys of a recipe."""
    return load_config(None, [f"model.name={model}", *(f"model.config.{item}" for item in items)]).model.config


def _build_model(model: str, overrides: dict):
    from .model import build_model

    try:
        return build_model(model, **overrides)
    except ValueError as err:  # MViTConfig's checks of the values given on the command line
        raise ConfigError(f"{model} with {overrides}: {err}") from None


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _check_output_file(path: str, option: str) -> None:
    """Refuse, before any work, an output file that could not be written."""
    file = Path(path)
    folder = file.parent
    if file.is_dir():
        raise ConfigError(f"{option} {path} is a folder; give a file name, e.g. {file / 'out'}")
    if not folder.is_dir():
        state = "is a file, not a folder" if folder.exists() else "does not exist"
        raise ConfigError(
            f"{option} {path}: the folder {folder} {state}; create the folder first "
            f"(mkdir -p {folder}) or choose another path"
        )
    if not os.access(folder, os.W_OK | os.X_OK) or (file.exists() and not os.access(file, os.W_OK)):
        raise ConfigError(f"{option} {path} cannot be written (no write permission); choose a path you can write to")


def _check_output_dir(path: str, option: str) -> None:
    """Refuse, before any work, an output folder that is a file or could not be created or written."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{option} {path} is a file, not a folder; choose another folder name")
    existing = next(p for p in (folder, *folder.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"{option} {path} cannot be created: {existing} is a file; choose another folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{option} {path} cannot be written: {existing} is read-only for this user; choose another folder"
        )


def _write_atomically(path: str, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` to a temporary file beside `path`, then rename it to `path`; a failure (a full disk)
    leaves any previous file at `path` as it was and becomes a one-line error."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, target)
    except (OSError, RuntimeError) as err:  # torch.save reports a full disk as a RuntimeError
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"could not write {path} ({err}); free some space or choose another path") from None


def _json(value, **kwargs) -> str:
    return json.dumps(json_safe(value), allow_nan=False, **kwargs)


def _train(args: argparse.Namespace) -> int:
    from .engine import NonFiniteLossError, TrainingInterrupted, train

    _check_output_dir(args.output_dir, "--output-dir")
    cfg = load_config(args.config, [*args.overrides, f"run.output_dir={args.output_dir}"])
    try:
        history = train(cfg)
    except NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_NON_FINITE
    except TrainingInterrupted as err:
        print(f"stopped: {err}", file=sys.stderr)
        return 128 + err.signum
    last = history["epochs"][-1] if history["epochs"] else {}
    summary = {k: v for k, v in last.items() if isinstance(v, (int, float))}
    if history["test"]:
        keys = (*get_task(cfg.model.task).summary_keys, "num_samples")
        summary.update({f"test_{k}": history["test"][k] for k in keys})
    if _is_main_process():
        print(_json(summary))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from .engine import evaluate_checkpoint

    if args.output:
        _check_output_file(args.output, "--output")
    cfg = load_config(args.config, args.overrides)
    splits = tuple(s.strip() for s in args.splits.split(",") if s.strip())
    unknown = [s for s in splits if s not in ("val", "test")]
    if unknown:
        raise ConfigError(f"--splits: unknown split(s) {unknown}; use val, test or val,test")
    results = evaluate_checkpoint(cfg, args.checkpoint, source=args.source, splits=splits)
    if not _is_main_process():  # under torchrun every process holds the same summed results
        return 0
    task = get_task(cfg.model.task)
    brief: dict = {"task": task.name, "metric": task.metric}
    for split, r in results.items():
        numbers = {k: v for k, v in r.items() if isinstance(v, (int, float))}
        brief[split] = {task.metric: numbers.pop(task.metric), **numbers}  # the task's headline number first
    print(_json(brief, indent=1))
    if args.output:
        _write_atomically(args.output, lambda tmp: tmp.write_text(_json(results, indent=1) + "\n"))
    return 0


def _flops(args: argparse.Namespace) -> int:
    from .complexity import count_flops, count_params, flops_by_block, format_table

    overrides = _model_overrides(args.model, args.overrides)
    if args.input_size:
        overrides["input_size"] = tuple(args.input_size)
    model = _build_model(args.model, overrides)
    shape = (1, model.config.in_channels, *model.config.input_size)
    params, gflops = count_params(model), count_flops(model, shape)
    print(
        json.dumps(
            {
                "model": args.model,
                "input": list(shape[1:]),
                "params": params,
                "params_M": round(params / 1e6, 3),
                "gflops_per_view": round(gflops, 3),
            }
        )
    )
    if args.blocks:
        print(format_table(flops_by_block(model, shape)))
    return 0


def _convert(args: argparse.Namespace) -> int:
    if args.overrides and not args.model:
        raise ConfigError("field=value overrides only apply with --model")
    model = _build_model(args.model, _model_overrides(args.model, args.overrides)) if args.model else None
    _check_output_file(args.output, "OUT")
    state = convert.read_checkpoint(args.input)
    try:
        if args.target:
            ours, out = state, convert.to_torchvision(state)
        else:
            ours = out = convert.convert_state_dict(state, args.source)
    except convert.CheckpointError as err:
        raise ConfigError(f"{args.input}: {err}") from None
    if model is not None:
        try:
            convert.load_pretrained(model, ours, source="mvit")
        except convert.CheckpointError as err:
            raise ConfigError(f"{args.input} does not fit --model {args.model}: {err}") from None
    _write_atomically(args.output, lambda tmp: torch.save(out, tmp))
    print(f"wrote {len(out)} tensors to {args.output}")
    return 0


def _error_line(err: BaseException) -> str:
    """The error's message as one line: its first line, then the others joined by '; '."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
    return " ".join(lines[:1] + ["; ".join(lines[1:])]).strip()


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may also follow options that come after the positional arguments
    if extra and hasattr(args, "overrides") and all("=" in item and not item.startswith("-") for item in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "recipes":
        print("\n".join(list_recipes()))
        return 0
    handler = {"train": _train, "eval": _eval, "flops": _flops, "convert": _convert}[args.command]
    try:
        return handler(args)
    except USER_ERRORS as err:
        if args.debug:
            traceback.print_exc()
        print(f"error: {_error_line(err)}", file=sys.stderr)
        return EXIT_CONFIG
