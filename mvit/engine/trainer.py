"""`train`: the training loop of the paper's recipe, the same code on a laptop CPU and on many GPUs.

One optimizer step:
  for each of ``accum_steps`` micro-batches: the task's batch transform (Mixup/CutMix and label smoothing
  for classification) -> forward under autocast -> the task's loss (soft-target cross-entropy; per-class
  binary cross-entropy for multilabel, see `mvit.engine.tasks`) -> backward (DDP syncs gradients on the
  last micro-batch only);
  then: check the loss is finite on every process -> set the step's learning rate -> clip the gradient
  norm -> AdamW step (through the grad scaler for fp16).
Around it: checkpoints every N steps and every epoch, resume from ``output_dir/checkpoint.pt``,
clip-level validation each epoch, video-level multi-view testing at the end, and a checkpoint before
exiting on SIGTERM or Ctrl-C.

A checkpoint never holds diverged weights: before any save the parameters and the optimizer state must be
finite, and a save that no validation or test loss has just confirmed is held in memory until the next
step's loss, computed with exactly those weights, comes out finite. The output folder is locked for the
run's life (`OutputDirLock`); ``config.yaml`` keeps the settings the run started with and
``config_history.jsonl`` gains a line per start and resume; on resume ``metrics.jsonl`` is cut back to
what it held when the checkpoint was taken, so it describes one run without repeated steps.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import random
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..data import RepeatAugSampler
from ..fused import fuse
from . import distributed
from .checkpoint import CHECKPOINT_NAME, OutputDirLock, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import ConfigError, TrainConfig, save_config
from .distributed import Context, autocast
from .inputs import EpochOrder, SeededSamples, build_datasets, check_dataset, eval_loader
from .log import MetricLog, environment, require_tensorboard
from .metrics import evaluate
from .network import build_model_from_config, load_pretrained
from .optim import build_optimizer, lr_schedule, set_lr
from .tasks import get_task


class NonFiniteLossError(RuntimeError):
    """The loss, the gradient norm, the weights or a validation loss became NaN or infinite; nothing was
    saved from that point on, and the message says which checkpoint is on disk."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT arrived; a checkpoint was written before stopping. ``signum`` says which."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


StepHook = Callable[[nn.Module, dict], None]
HISTORY_NAME = "config_history.jsonl"  # one line per start and resume of a run: its settings and what changed
# settings a resume may change without changing what the run computes
HARMLESS_KEYS = {
    "run.output_dir",
    "run.progress",
    "run.tensorboard",
    "run.log_every_steps",
    "run.checkpoint_every_steps",
    "data.num_workers",
}


def train(
    cfg: TrainConfig,
    train_set: Optional[Dataset] = None,
    val_set: Optional[Dataset] = None,
    test_set: Optional[Dataset] = None,
    on_step: Optional[StepHook] = None,
) -> dict:
    """Train ``cfg.model`` with the recipe in `cfg`; resume if ``cfg.run.output_dir`` holds a checkpoint.

    Datasets come from ``cfg.data`` unless given: `train_set` and `val_set` yield ``(clip, label)``,
    `test_set` ``(views (V, 3, T, H, W), label)`` for video-level testing (None: skipped); the label is
    what ``cfg.model.task`` expects (an int for classification, a multi-hot ``(K,)`` tensor for multilabel).
    Validation records hold ``val_<metric>`` and the test record ``<metric>`` of the task (``top1``, ``mAP``).
    `on_step(model, info)` runs on every process after each optimizer step (``info``: epoch, step, loss, lr).

    Returns the history: ``{"steps": [per logged step], "epochs": [per epoch, with validation],
    "test": multi-view results or None, "output_dir": ...}``.
    Raises `NonFiniteLossError` on a NaN/inf loss and `TrainingInterrupted` after SIGTERM/SIGINT.
    """
    if cfg.run.output_dir is None:
        raise ConfigError(
            "run.output_dir is not set: pass --output-dir DIR (or run.output_dir=DIR) for checkpoints and logs"
        )
    _check_runtime(cfg)
    ctx = distributed.setup(cfg.run.device)
    lock = OutputDirLock(cfg.run.output_dir)
    try:
        _lock_output_dir(lock, ctx)
        return _Run(cfg, ctx, train_set, val_set, test_set, on_step).fit()
    finally:
        lock.release()
        distributed.teardown(ctx)


def _lock_output_dir(lock: OutputDirLock, ctx: Context) -> None:
    """Rank 0 takes the folder's lock; every process stops if it could not."""
    error = None
    if ctx.is_main:
        try:
            lock.acquire()
        except ConfigError as err:
            error = err
    failed = ctx.sum(torch.tensor(float(error is not None), device=ctx.device)).item() if ctx.distributed else 0
    if error is not None:
        raise error
    if failed:
        raise ConfigError(f"rank 0 could not lock --output-dir {lock.dir}; see its error")


def _check_runtime(cfg: TrainConfig) -> None:
    """Settings that depend on this machine, checked before anything is built."""
    cuda = torch.cuda.is_available() if cfg.run.device == "auto" else cfg.run.device == "cuda"
    if cfg.run.precision == "fp16" and not cuda:
        raise ConfigError(
            "run.precision=fp16 needs a CUDA device (a grad scaler on GPU); on the CPU use run.precision=bf16 or fp32"
        )
    if cfg.run.tensorboard:
        require_tensorboard()


class _Run:
    """The state of one training run (model, optimizer, loaders, counters) and its loop."""

    def __init__(self, cfg: TrainConfig, ctx: Context, train_set, val_set, test_set, on_step) -> None:
        self.cfg, self.ctx, self.on_step = cfg, ctx, on_step
        self.out = Path(cfg.run.output_dir)
        self.ckpt_path = self.out / CHECKPOINT_NAME
        torch.manual_seed(cfg.run.seed)  # the same initial weights on every process
        self.model = build_model_from_config(cfg.model).to(ctx.device)
        if cfg.run.fused_ops is True or (cfg.run.fused_ops == "auto" and ctx.device.type == "cpu"):
            fuse(self.model)  # in place; the state dict, and so every checkpoint, is the plain model's
        model_cfg = self.model.config
        if train_set is None:
            train_set, val_set, test_set = build_datasets(cfg, model_cfg)
        for name, ds in (("train", train_set), ("val", val_set), ("test", test_set)):
            if ds is not None:
                check_dataset(ds, model_cfg.num_classes, name)
        self.train_set, self.val_set, self.test_set = train_set, val_set, test_set
        self.num_classes = model_cfg.num_classes

        d, o = cfg.data, cfg.optim
        self.scaler = torch.amp.GradScaler(ctx.device.type, enabled=cfg.run.precision == "fp16")
        self.order, self.loader = _train_loader(cfg, train_set, ctx)
        self.micro_per_epoch = len(self.order.sampler) // d.batch_size
        self.steps_per_epoch = self.micro_per_epoch // o.accum_steps
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"an epoch of {len(self.order.sampler)} clips per process is less than one optimizer "
                f"step of data.batch_size={d.batch_size} x optim.accum_steps={o.accum_steps}; "
                "lower them or use more data"
            )
        self.micro_per_epoch = self.steps_per_epoch * o.accum_steps  # a trailing partial step is dropped
        self.schedule = lr_schedule(cfg, self.steps_per_epoch, ctx.world_size)
        self.peak_lr = self.schedule.peak_lr
        self.optimizer = build_optimizer(self.model, o, self.peak_lr)
        self.task = get_task(cfg.model.task)
        self.mix = self.task.batch_transform(cfg, self.num_classes)

        self.epoch, self.micro, self.step = 0, 0, 0  # epoch, micro-batches done in it, optimizer steps
        self.epoch_loss = [0.0, 0]  # sum and count of this epoch's step losses
        self.history: dict = {"steps": [], "epochs": [], "test": None, "output_dir": str(self.out)}
        self.pending: Optional[dict] = None  # a checkpoint waiting for the next loss to confirm its weights
        self.on_disk: Optional[str] = None  # where the checkpoint on disk stands, for error messages
        self.log = MetricLog(self.out, cfg.run.tensorboard) if ctx.is_main else None
        changes: dict = {}
        if self.ckpt_path.is_file():
            changes = self._resume(load_checkpoint(self.ckpt_path, map_location=ctx.device))
        else:
            if cfg.model.pretrained:
                fresh = load_pretrained(self.model, cfg.model.pretrained, cfg.model.pretrained_source)
                if ctx.is_main:
                    print(f"initialised from {cfg.model.pretrained}" + (f" except {fresh}" if fresh else ""))
            torch.manual_seed(cfg.run.seed + ctx.rank)  # dropout, drop path and Mixup differ across processes
            np.random.seed(cfg.run.seed + ctx.rank)
            random.seed(cfg.run.seed + ctx.rank)
        self.net = self.model
        if ctx.distributed:
            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if cfg.run.compile:
            self.net = torch.compile(self.net)
        if ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            resumed = self.on_disk is not None
            if not resumed or not (self.out / "config.yaml").is_file():
                save_config(cfg, self.out / "config.yaml")  # the settings the run started with
            env = environment(ctx.world_size, ctx.device)
            (self.out / "environment.json").write_text(json.dumps(env, indent=2) + "\n")
            entry = {
                "event": "resume" if resumed else "start",
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "step": self.step,
                "epoch": self.epoch,
                "changed": changes,
                "config": cfg.to_dict(),
                "environment": env,
            }
            with open(self.out / HISTORY_NAME, "a") as f:
                f.write(json.dumps(entry) + "\n")

    # ------------------------------------------------------------------------------------------------
    def fit(self) -> dict:
        cfg = self.cfg
        try:
            with _StopSignals() as stop:
                for epoch in range(self.epoch, cfg.optim.epochs):
                    self.epoch = epoch
                    self._train_epoch(stop)
                    self._end_epoch(epoch)
            if cfg.run.multi_view_eval and self.test_set is not None and self.history["test"] is None:
                self.history["test"] = self._evaluate(self.test_set, multi_view=True)
                self._record("test", **_scalars(self.history["test"]))
                self._check_eval_loss("test", self.history["test"]["loss"])
                self._save(confirmed=True)
            self._write_pending()  # no later loss will come to confirm it; its weights are finite
        finally:
            if self.log is not None:
                self.log.close()
        return self.history

    def _train_epoch(self, stop: "_StopSignals") -> None:
        cfg, ctx = self.cfg, self.ctx
        accum = cfg.optim.accum_steps
        self.order.set_epoch(self.epoch, start=self.micro * cfg.data.batch_size)
        if hasattr(self.train_set, "reset_failures"):  # VideoDataset: unreadable files replaced this epoch
            self.train_set.reset_failures()
        remaining = self.micro_per_epoch - self.micro
        bar = _progress(cfg, ctx, self.epoch, self.steps_per_epoch, self.micro // accum)
        self.net.train()
        loss_sum = torch.zeros((), device=ctx.device)
        bad_inputs = torch.zeros((), device=ctx.device)  # micro-batches holding NaN/inf in this step
        tick, clips = time.perf_counter(), 0
        for i, batch in enumerate(self.loader):
            if i >= remaining:
                break
            x, y = self.task.to_device(batch, ctx.device)
            clip_batch = self.task.clips(x)
            bad_inputs += ~torch.isfinite(clip_batch.sum())  # NaN/inf in the clips (a sum: far cheaper than isfinite)
            x, targets = self.mix(x, y)
            last = (self.micro + 1) % accum == 0
            sync = contextlib.nullcontext() if last or not ctx.distributed else self.net.no_sync()
            with sync:
                with autocast(ctx.device, cfg.run.precision):
                    outputs = self.task.forward(self.net, x)
                loss = self.task.loss(outputs, targets)
                self.scaler.scale(loss / accum).backward()
            loss_sum += loss.detach()
            self.micro += 1
            clips += clip_batch.shape[0] * ctx.world_size
            if not last:
                continue
            # per process: mean loss, stop request, bad inputs; summed over processes
            flags = ctx.sum(
                torch.stack([loss_sum / accum, torch.tensor(float(stop.signum or 0), device=ctx.device), bad_inputs])
            )
            loss_sum.zero_()
            bad_inputs.zero_()
            loss_value, stop_flag, bad_flag = flags.tolist()
            loss_value /= ctx.world_size
            # stop if any process got a signal (named by this process's own signal, else SIGTERM)
            stop_signum = stop.signum or (signal.SIGTERM if stop_flag > 0 else 0)
            if not math.isfinite(loss_value):
                if bad_flag:  # the data, not the weights: a checkpoint waiting for this loss is sound
                    self._write_pending()
                self._non_finite("loss", loss_value, bad_flag > 0)
            self._write_pending()  # this loss was computed with the weights it holds, and it is finite
            lr = self.schedule(self.step)
            set_lr(self.optimizer, lr)
            grad_norm = self._optimizer_step()
            self.step += 1
            self.epoch_loss = [self.epoch_loss[0] + loss_value, self.epoch_loss[1] + 1]
            info = {
                "epoch": self.epoch,
                "step": self.step,
                "iteration": self.micro // accum,
                "loss": loss_value,
                "lr": lr,
                "grad_norm": grad_norm,
            }
            if self.step % cfg.run.log_every_steps == 0 or self.micro == self.micro_per_epoch:
                now = time.perf_counter()
                info["clips_per_s"] = clips / max(now - tick, 1e-9)
                tick, clips = now, 0
                self.history["steps"].append(info)
                self._record("train", **info)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    loss=f"{loss_value:.4f}",
                    lr=f"{lr:.2e}",
                    **({"clips/s": f"{info['clips_per_s']:.1f}"} if "clips_per_s" in info else {}),
                )
            every = cfg.run.checkpoint_every_steps
            if every and self.step % every == 0 and self.micro < self.micro_per_epoch:
                self._save(confirmed=False)
            if self.on_step is not None:
                self.on_step(self.model, info)
            if stop_signum:
                self._save(confirmed=True)  # no later step: written now (its weights are finite)
                name = signal.Signals(stop_signum).name
                raise TrainingInterrupted(
                    f"{name} received: checkpoint written to {self.ckpt_path} at epoch "
                    f"{self.epoch}, iteration {self.micro // accum}; run the same command "
                    "again to resume",
                    stop_signum,
                )
        if bar is not None:
            bar.close()

    def _optimizer_step(self) -> Optional[float]:
        """Clip, step, zero the gradients; returns the gradient norm before clipping (None: no clipping)."""
        clip = self.cfg.optim.clip_grad_norm
        norm = None
        if clip is not None:
            self.scaler.unscale_(self.optimizer)
            norm = float(nn.utils.clip_grad_norm_(self.model.parameters(), clip))
            if not math.isfinite(norm) and not self.scaler.is_enabled():  # fp16: the scaler skips such steps
                self._non_finite("gradient norm", norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return norm

    def _non_finite(self, what: str, value: float, bad_inputs: bool = False) -> None:
        self.pending = None  # its weights gave this value: never written
        cause = (
            "the input clips of this step hold NaN/inf: check the data"
            if bad_inputs
            else "the weights diverged: lower optim.lr, keep optim.clip_grad_norm on, or use run.precision=fp32"
        )
        raise NonFiniteLossError(
            f"{what} is {value} at epoch {self.epoch}, iteration {self.micro // self.cfg.optim.accum_steps} "
            f"(optimizer step {self.step + 1}); training stopped, nothing was saved from this point and "
            f"{self._kept()}. Probable cause: {cause}"
        )

    def _kept(self) -> str:
        if self.on_disk is None:
            return "no checkpoint has been written"
        return f"{self.ckpt_path} still holds the checkpoint of {self.on_disk}"

    def _check_eval_loss(self, split: str, loss: float) -> None:
        if not math.isfinite(loss):
            self.pending = None
            raise NonFiniteLossError(
                f"the {split} loss is {loss} after optimizer step {self.step}: the weights diverged, so they were "
                f"not saved and {self._kept()}. Lower optim.lr, keep optim.clip_grad_norm on, or use "
                "run.precision=fp32"
            )

    def _end_epoch(self, epoch: int) -> None:
        cfg = self.cfg
        total, count = self.epoch_loss
        record = {
            "epoch": epoch,
            "step": self.step,
            "lr": self.schedule(max(self.step - 1, 0)),
            "train_loss": total / max(count, 1),
        }
        if hasattr(self.train_set, "failures"):
            record["unreadable_files"] = len(self.train_set.failures)
        self.epoch, self.micro, self.epoch_loss = epoch + 1, 0, [0.0, 0]
        every = cfg.run.eval_every_epochs
        validated = self.val_set is not None and every and ((epoch + 1) % every == 0 or epoch + 1 == cfg.optim.epochs)
        if validated:
            record.update({f"val_{k}": v for k, v in self._evaluate(self.val_set, multi_view=False).items()})
        self.history["epochs"].append(record)
        self._record("epoch", **_scalars(record))
        if validated:
            self._check_eval_loss("validation", record["val_loss"])
        self._save(confirmed=bool(validated))

    def _evaluate(self, dataset: Dataset, multi_view: bool) -> dict:
        loader = eval_loader(self.cfg, dataset, self.ctx)
        return evaluate(
            self.model,
            loader,
            num_classes=self.num_classes,
            multi_view=multi_view,
            device=self.ctx.device,
            precision=self.cfg.run.precision,
            ctx=self.ctx,
            task=self.task,
        )

    def _record(self, kind: str, **values) -> None:
        if self.log is not None:
            self.log.write(kind, **{"step": self.step, **values})

    # ------------------------------------------------------------------------------------------------
    def _save(self, confirmed: bool) -> None:
        """Checkpoint the run (a collective: every process sends its RNG states to rank 0).

        The parameters and the optimizer state must be finite. `confirmed`: written now (a validation or test
        loss has just shown these weights sound, or no later step comes). Otherwise the state is copied and
        written by `_write_pending` once the next step's loss, computed with these weights, is finite."""
        self._check_finite_state()
        rngs = self.ctx.gather(rng_state())
        where = f"epoch {self.epoch}, iteration {self.micro // self.cfg.optim.accum_steps}, optimizer step {self.step}"
        state = None
        if self.ctx.is_main:
            state = {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(),
                "schedule": {"step": self.step, "peak_lr": self.peak_lr, "total_steps": self.schedule.total_steps},
                "epoch": self.epoch,
                "micro": self.micro,
                "epoch_loss": self.epoch_loss,
                "step": self.step,
                "world_size": self.ctx.world_size,
                "batch_size": self.cfg.data.batch_size,
                "rng": rngs,
                "history": self.history,
                "config": self.cfg.to_dict(),
                "metrics_bytes": self.log.size(),
            }
        self.pending = None
        if confirmed:
            if state is not None:
                save_checkpoint(state, self.ckpt_path)
            self.on_disk = where
            self.ctx.barrier()
        else:
            self.pending = {"where": where, "state": None if state is None else _cpu_copy(state)}

    def _write_pending(self) -> None:
        if self.pending is not None:
            if self.pending["state"] is not None:
                save_checkpoint(self.pending["state"], self.ckpt_path)
            self.on_disk = self.pending["where"]
            self.pending = None

    def _check_finite_state(self) -> None:
        """Raise `NonFiniteLossError` (nothing written) if a parameter or an optimizer state is NaN/inf."""
        tensors = [p.detach() for p in self.model.parameters()]
        tensors += [
            v for s in self.optimizer.state.values() for v in s.values() if torch.is_tensor(v) and v.is_floating_point()
        ]
        if not bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()):
            self.pending = None
            raise NonFiniteLossError(
                f"the weights or the optimizer state hold NaN/inf after optimizer step {self.step}: they were not "
                f"saved and {self._kept()}. Lower optim.lr, keep optim.clip_grad_norm on, or use run.precision=fp32"
            )

    def _resume(self, ckpt: dict) -> dict:
        """Restore the run from `ckpt`; returns the changed settings ``{key: [old, new]}``."""
        old, new = ckpt["config"], self.cfg.to_dict()
        changed = _differences(old, new)
        try:
            self.model.load_state_dict(ckpt["model"])
        except RuntimeError as err:
            raise ConfigError(
                f"{self.ckpt_path} holds another model ({', '.join(changed) or 'see below'} differ from "
                f"this config); use a new --output-dir or the run's own config.\n{err}"
            ) from None
        affecting = [key for key in changed if key not in HARMLESS_KEYS]
        if affecting and self.ctx.is_main:
            warnings.warn(
                f"resuming {self.ckpt_path} with changed settings: "
                + ", ".join(f"{key} {_dotted(old, key)!r} -> {_dotted(new, key)!r}" for key in affecting)
                + f"; the rest of the run follows the new settings, so its results are not those of either "
                f"setting alone ({self.out / HISTORY_NAME} records the settings of every start)"
            )
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch, self.micro, self.step = ckpt["epoch"], ckpt["micro"], ckpt["step"]
        self.epoch_loss = ckpt["epoch_loss"]
        self.history = ckpt["history"]
        same_layout = ckpt["world_size"] == self.ctx.world_size and ckpt["batch_size"] == self.cfg.data.batch_size
        if same_layout:
            set_rng_state(ckpt["rng"][self.ctx.rank])
        else:
            warnings.warn(
                f"resuming with {self.ctx.world_size} processes x batch {self.cfg.data.batch_size} from a "
                f"checkpoint of {ckpt['world_size']} x {ckpt['batch_size']}: epoch {self.epoch} restarts "
                "from its first batch and the run will not repeat the original exactly"
            )
            self.micro = 0
            torch.manual_seed(self.cfg.run.seed + 1000 * self.step + self.ctx.rank)
        self.on_disk = (
            f"epoch {ckpt['epoch']}, iteration {ckpt['micro'] // self.cfg.optim.accum_steps}, "
            f"optimizer step {self.step}"
        )
        if self.log is not None:
            self.log.truncate(ckpt["metrics_bytes"])  # records after the checkpoint are redone
        if self.ctx.is_main:
            print(
                f"resumed from {self.ckpt_path}: epoch {self.epoch}, iteration "
                f"{self.micro // self.cfg.optim.accum_steps}, optimizer step {self.step}",
                flush=True,
            )
        return {key: [_dotted(old, key), _dotted(new, key)] for key in changed}


# ----------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------


def _train_loader(cfg: TrainConfig, dataset: Dataset, ctx: Context) -> tuple[EpochOrder, DataLoader]:
    sampler = RepeatAugSampler(
        dataset,
        num_repeats=cfg.augment.repeat_aug,
        num_replicas=ctx.world_size,
        rank=ctx.rank,
        shuffle=cfg.data.shuffle,
        seed=cfg.run.seed,
    )
    order = EpochOrder(sampler, seed=cfg.run.seed, rank=ctx.rank)
    loader = DataLoader(
        SeededSamples(dataset),
        batch_size=cfg.data.batch_size,
        sampler=order,
        drop_last=True,
        num_workers=cfg.data.num_workers,
        pin_memory=ctx.device.type == "cuda",
        persistent_workers=cfg.data.num_workers > 0,
        generator=torch.Generator(),
        collate_fn=getattr(dataset, "collate_fn", None),  # a dataset whose items need their own batching (detection)
    )  # its own generator: the global RNG stays untouched
    return order, loader


def _progress(cfg: TrainConfig, ctx: Context, epoch: int, total: int, initial: int):
    if not (cfg.run.progress and ctx.is_main):
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc=f"epoch {epoch + 1}/{cfg.optim.epochs}", leave=False, dynamic_ncols=True
    )


def _dotted(config: dict, key: str):
    for part in key.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config


def _cpu_copy(value):
    """A deep copy with every tensor copied to the CPU (a state that later steps cannot change)."""
    if torch.is_tensor(value):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _cpu_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cpu_copy(v) for v in value)
    return copy.deepcopy(value)


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts."""
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


def _scalars(record: dict) -> dict:
    """The scalar entries of a record (per-class lists and confusion matrices stay in the history)."""
    return {k: v for k, v in record.items() if isinstance(v, (int, float)) or v is None}


class _StopSignals:
    """Within the block, SIGTERM and SIGINT set ``signum`` instead of killing the process; the loop
    checkpoints and stops at the next optimizer step. A second signal interrupts at once."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopping without a checkpoint")
        self.signum = signum

    def __enter__(self) -> "_StopSignals":
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def evaluate_checkpoint(
    cfg: TrainConfig, checkpoint: str | Path, source: str = "auto", splits: tuple[str, ...] = ("val", "test")
) -> dict:
    """Evaluate the weights in `checkpoint` (a training checkpoint, a state dict, or torchvision /
    PySlowFast / pytorchvideo weights, see `mvit.convert`) on the datasets of ``cfg.data``.

    ``"val"``: clip-level (one centre clip per video); ``"test"``: video-level multi-view
    (``data.num_clips x data.num_crops`` views), both with the metric of ``cfg.model.task`` (each result's
    ``metric`` names its key). Returns ``{split: evaluate(...) result}`` for the splits the dataset has.
    Runs under torchrun too (each process takes a shard).
    """
    from .. import convert

    ctx = distributed.setup(cfg.run.device)
    try:
        model = build_model_from_config(cfg.model)
        convert.load_pretrained(model, checkpoint, source=source)
        model.to(ctx.device)
        _, val_set, test_set = build_datasets(cfg, model.config)
        results = {}
        for split, dataset in (("val", val_set), ("test", test_set)):
            if split not in splits or dataset is None:
                continue
            check_dataset(dataset, model.config.num_classes, split)
            results[split] = evaluate(
                model,
                eval_loader(cfg, dataset, ctx),
                multi_view=split == "test",
                device=ctx.device,
                precision=cfg.run.precision,
                ctx=ctx,
                task=cfg.model.task,
            )
        if not results:
            raise ConfigError(f"data.dataset={cfg.data.dataset!r} has none of the splits {list(splits)}")
        return results
    finally:
        distributed.teardown(ctx)
