"""The paper's analyses of trained and untrained models: mean attention distance (Appendix B,
Fig. A.6) and the frame-shuffle test (Table 9), with the plotting helpers the book uses.

Mean attention distance (defined in the ViT paper, Appendix D.7, and used by Fig. A.6): for one head,
the distance from a query to a key, weighted by the attention the query pays to that key, summed over
keys, averaged over queries and over inputs:

    d(head) = mean_inputs mean_i  sum_j A_ij * ||p_i - p_j||

MViT's grids change from block to block and its keys live on a coarser (pooled) grid than its queries,
so every token is placed at the centre of its receptive field in the *input*: pixel ``j`` of a frame
sits at coordinate ``j``, frame ``t`` of the clip at coordinate ``t``, and a token of a grid made by a
convolution or pooling window (kernel k, stride s, padding p) on a finer grid sits at the centre of
that window. The distances then form a rectangular ``Lq x Lk`` matrix.

Conventions, all stated here once:
- the class token has no position. Its query row is dropped; its key column is dropped too and, by
  default (``cls_token="renormalize"``), every row is rescaled to sum to one over the space-time keys.
  ``cls_token="zero"`` keeps the rows as they are, i.e. counts attention paid to the class token as
  distance 0.
- distance is spatial by default (``||(dy, dx)||`` in input pixels), which is what an image-trained
  reader expects; ``frame_scale=f`` adds time, one input frame counting as ``f`` pixels.
- normalised (``normalize=True``) by the largest distance between two input pixel centres: the
  diagonal of the frame, ``sqrt((H-1)^2 + (W-1)^2)``, plus ``((T-1) f)^2`` under the square root
  when time is included. 1.0 therefore means "as far as two points of the input can be".
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Mapping, NamedTuple, Optional, Sequence

import torch
from torch import nn

from .attention import AttentionMap
from .configs import MViTConfig, Triple, block_schedule, pool_padding

CLS_TOKEN_RULES = ("renormalize", "zero")


class TokenGrid(NamedTuple):
    """A grid of tokens placed in the input.

    ``thw``: grid size (T, H, W); ``stride``: distance in input frames / pixels between neighbouring
    tokens on each axis (the cumulative stride); ``offset``: input coordinate of token (0, 0, 0)'s centre.
    """

    thw: Triple
    stride: tuple[float, float, float]
    offset: tuple[float, float, float]

    def pooled(self, kernel: Triple, stride: Triple, padding: Triple) -> "TokenGrid":
        """The grid made by a window (kernel, stride, padding) sliding over this one.

        Output token ``i`` covers input tokens ``i*s - p ... i*s - p + k - 1``; its centre is at input
        token ``i*s - p + (k - 1) / 2``, hence the new stride and offset below.
        """
        thw = tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(self.thw, kernel, stride, padding))
        new_stride = tuple(g * s for g, s in zip(self.stride, stride))
        offset = tuple(o + g * ((k - 1) / 2 - p) for o, g, k, p in zip(self.offset, self.stride, kernel, padding))
        return TokenGrid(thw, new_stride, offset)  # type: ignore[arg-type]


def token_centers(thw: Triple, stride_thw: Sequence[float], offset: Sequence[float]) -> torch.Tensor:
    """Input coordinates ``(t, y, x)`` of the centre of every token of a grid, in the order the tokens
    are flattened (time outer, then rows, then columns): ``(T*H*W, 3)`` float64.

    ``stride_thw``: cumulative stride of the grid in input frames / pixels; ``offset``: centre of
    token (0, 0, 0).
    """
    axes = [torch.arange(n, dtype=torch.float64) * s + o for n, s, o in zip(thw, stride_thw, offset)]
    return torch.cartesian_prod(*axes).reshape(-1, 3)


def block_grids(config: MViTConfig) -> list[tuple[TokenGrid, TokenGrid]]:
    """The query grid and the key/value grid of every block, placed in the input of size
    ``config.input_size``.

    The cube embedding is a window (patch kernel, stride, padding) on the input pixels; each block pools
    its queries (stride ``q_stride``) and its keys/values (stride ``kv_stride``) from the grid entering
    it, with the padding `mvit.pooling.Pool` uses, ``(kernel - 1) // 2``. So the query grid's cumulative stride
    is the patch stride times every Q stride met so far, and the key grid's is that of the block's input
    times the block's K/V stride.
    """
    pixels = TokenGrid(tuple(config.input_size), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))  # type: ignore[arg-type]
    grid = pixels.pooled(config.patch_kernel, config.patch_stride, config.patch_padding)
    grids = []
    for spec in block_schedule(config):

        def pool(kernel: Optional[Triple], stride: Triple) -> TokenGrid:
            return grid if kernel is None else grid.pooled(kernel, stride, pool_padding(kernel))

        q_grid, kv_grid = pool(spec.q_kernel, spec.q_stride), pool(spec.kv_kernel, spec.kv_stride)
        if (q_grid.thw, kv_grid.thw) != (spec.out_thw, spec.kv_thw):  # the schedule and Pool must agree
            raise AssertionError(
                f"block {spec.index}: grids {q_grid.thw}, {kv_grid.thw} disagree with the "
                f"schedule's {spec.out_thw}, {spec.kv_thw}"
            )
        grids.append((q_grid, kv_grid))
        grid = q_grid
    return grids


def _spatial_or_spacetime(centers: torch.Tensor, frame_scale: Optional[float]) -> torch.Tensor:
    if frame_scale is None:
        return centers[:, 1:]
    return centers * torch.tensor([frame_scale, 1.0, 1.0], dtype=centers.dtype)


def max_distance(input_size: Triple, frame_scale: Optional[float] = None) -> float:
    """The largest distance between two input pixel centres: the frame diagonal
    ``sqrt((H-1)^2 + (W-1)^2)``, with ``((T-1) * frame_scale)^2`` added under the root when time counts."""
    t, h, w = input_size
    time = 0.0 if frame_scale is None else ((t - 1) * frame_scale) ** 2
    return math.sqrt(time + (h - 1) ** 2 + (w - 1) ** 2)


def mean_attention_distance(
    maps: Sequence[AttentionMap],
    model_config: MViTConfig,
    *,
    input_size: Optional[Triple] = None,
    frame_scale: Optional[float] = None,
    cls_token: str = "renormalize",
    normalize: bool = True,
) -> list[torch.Tensor]:
    """Mean attention distance of every head of every block, averaged over the inputs of one batch.

    Args:
        maps: one `AttentionMap` per block, as returned by
            ``model.forward_features(x, return_attention=True)[1]``; ``attn: (B, heads, Lq, Lk)``.
        model_config: the model's `MViTConfig` (it fixes where every token sits in the input).
        input_size: (T, H, W) of the input ``x``; defaults to ``model_config.input_size``.
        frame_scale: None for spatial distance; else include time, one input frame = this many pixels.
        cls_token: ``"renormalize"`` (default) or ``"zero"``; see the module docstring.
        normalize: divide by `max_distance` (default); False gives input pixels.

    Returns: a list with one tensor ``(heads,)`` per block (MViT's blocks have different numbers of
    heads); ``torch.stack`` it when they are all equal.
    """
    if cls_token not in CLS_TOKEN_RULES:
        raise ValueError(f"cls_token={cls_token!r} is not one of {CLS_TOKEN_RULES}")
    if frame_scale is not None and frame_scale <= 0:
        raise ValueError(f"frame_scale={frame_scale} must be positive (pixels per frame) or None (spatial only)")
    config = model_config if input_size is None else dataclasses.replace(model_config, input_size=tuple(input_size))
    grids = block_grids(config)
    if len(maps) != len(grids):
        raise ValueError(
            f"got {len(maps)} attention maps for a model of {len(grids)} blocks; pass all of "
            "model.forward_features(x, return_attention=True)[1]"
        )
    scale = max_distance(config.input_size, frame_scale) if normalize else 1.0
    distances = []
    for index, (m, (q_grid, kv_grid)) in enumerate(zip(maps, grids)):
        if (tuple(m.q_thw), tuple(m.kv_thw)) != (q_grid.thw, kv_grid.thw):
            raise ValueError(
                f"block {index}: the attention map's grids (queries {tuple(m.q_thw)}, keys {tuple(m.kv_thw)}) "
                f"do not match an input of size {config.input_size} (queries {q_grid.thw}, keys {kv_grid.thw}); "
                "pass input_size=x.shape[-3:] for the input the maps came from"
            )
        attn = m.attn.double()
        if m.has_cls:
            attn = attn[:, :, 1:, 1:]
            if cls_token == "renormalize":
                attn = attn / attn.sum(dim=-1, keepdim=True)
        q = _spatial_or_spacetime(token_centers(*q_grid), frame_scale)
        k = _spatial_or_spacetime(token_centers(*kv_grid), frame_scale)
        dist = torch.cdist(q, k).to(attn.device)  # (Lq, Lk)
        per_query = torch.einsum("bhqk,qk->bhq", attn, dist)
        distances.append((per_query.mean(dim=(0, 2)) / scale).float().cpu())
    return distances


@torch.no_grad()
def measure_attention_distance(model: nn.Module, inputs: Iterable, **kwargs) -> list[torch.Tensor]:
    """`mean_attention_distance` of `model` averaged over every input in `inputs`.

    ``inputs``: batches ``x: (B, 3, T, H, W)`` (or images ``(B, 3, H, W)`` for a model whose T is 1), or
    ``(x, label)`` pairs as a DataLoader yields them.
    ``kwargs`` go to `mean_attention_distance`. Runs the model in eval mode; returns one ``(heads,)``
    tensor per block.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = None, 0
    for batch in inputs:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        _, maps = model.forward_features(x.to(device), return_attention=True)
        input_size = (1, *x.shape[-2:]) if x.ndim == 4 else tuple(x.shape[-3:])
        per_block = mean_attention_distance(maps, model.config, input_size=input_size, **kwargs)
        n = x.shape[0]
        total = [d * n for d in per_block] if total is None else [t + d * n for t, d in zip(total, per_block)]
        count += n
    model.train(was_training)
    if total is None:
        raise ValueError("measure_attention_distance got no inputs")
    return [t / count for t in total]


def shuffle_frames(x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Each clip's frames in a random order of its own (Table 9).

    ``x: (..., C, T, H, W)`` (clips, or views of clips) -> same shape.
    """
    if x.ndim < 4:
        raise ValueError(f"shuffle_frames expects clips (..., C, T, H, W), got shape {tuple(x.shape)}")
    lead, (c, t, h, w) = x.shape[:-4], x.shape[-4:]
    clips = x.reshape(-1, c, t, h, w)
    order = torch.rand(clips.shape[0], t, generator=generator).argsort(dim=1).to(x.device)
    rows = torch.arange(clips.shape[0], device=x.device)[:, None]
    shuffled = clips[rows, :, order]  # (N, T, C, H, W): the indexed axes come first
    return shuffled.transpose(1, 2).reshape(*lead, c, t, h, w)


class _ShuffledFrames:
    """A loader whose clips have their frames shuffled; the same permutations on every pass."""

    def __init__(self, loader: Iterable, seed: int) -> None:
        self.loader, self.seed = loader, seed

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed)
        for x, labels in self.loader:
            yield shuffle_frames(x, generator), labels


def _group_accuracy(confusion: Sequence[Sequence[int]], labels: Sequence[int]) -> tuple[float, int]:
    """Top-1 accuracy (percent) and sample count over the classes `labels`, from a confusion matrix."""
    rows = [confusion[i] for i in labels]
    total = sum(sum(row) for row in rows)
    return (100.0 * sum(confusion[i][i] for i in labels) / total if total else float("nan")), total


def frame_shuffle_accuracy(
    model: nn.Module,
    loader: Iterable,
    *,
    seed: int = 0,
    multi_view: bool = False,
    groups: Optional[Mapping[str, Sequence[int]]] = None,
    **evaluate_kwargs,
) -> dict:
    """Table 9's test: top-1 accuracy (percent) on `loader` with the frames in order and with every
    clip's frames randomly shuffled at test time (the model is trained without shuffling).

    ``loader`` yields ``(x (B, 3, T, H, W), labels)`` (or ``(views (B, V, 3, T, H, W), labels)`` with
    ``multi_view=True``; each view is shuffled on its own). Returns ``{"ordered", "shuffled", "change"}``,
    and with ``groups`` (name -> labels, e.g. `mvit.data.synthetic.class_groups`) also ``"groups"``:
    ``{name: {"ordered", "shuffled", "change", "num_samples"}}``, the same accuracies over the clips whose
    true class lies in the group (a prediction outside the group counts as wrong).
    Evaluation is `mvit.engine.evaluate`; further keyword arguments go to it.
    """
    from .engine import evaluate

    ordered = evaluate(model, loader, multi_view=multi_view, **evaluate_kwargs)
    shuffled = evaluate(model, _ShuffledFrames(loader, seed), multi_view=multi_view, **evaluate_kwargs)
    result = {"ordered": ordered["top1"], "shuffled": shuffled["top1"], "change": shuffled["top1"] - ordered["top1"]}
    if groups is not None:
        result["groups"] = {}
        for name, labels in groups.items():
            (before, n), (after, _) = (_group_accuracy(r["confusion"], labels) for r in (ordered, shuffled))
            result["groups"][name] = {"ordered": before, "shuffled": after, "change": after - before, "num_samples": n}
    return result


def plot_attention_distance(
    distances: Sequence[torch.Tensor],
    ax=None,
    *,
    label: Optional[str] = None,
    color: Optional[str] = None,
    title: Optional[str] = None,
):
    """Fig. A.6's scatter: one point per head, block index on x, mean attention distance on y, and a
    line through the per-block mean over heads. ``distances``: one ``(heads,)`` tensor per block (as
    returned by `mean_attention_distance`). Returns the matplotlib axes."""
    import matplotlib.pyplot as plt

    ax = ax if ax is not None else plt.gca()
    xs = [i for i, d in enumerate(distances) for _ in range(d.numel())]
    ys = [float(v) for d in distances for v in d]
    points = ax.scatter(xs, ys, s=18, alpha=0.7, color=color, label=label)
    ax.plot(
        range(len(distances)),
        [float(d.mean()) for d in distances],
        color=points.get_facecolor()[0],
        alpha=0.5,
        linewidth=1,
    )
    ax.set_xlabel("block")
    ax.set_ylabel("mean attention distance")
    ax.set_xticks(range(len(distances)))
    if title:
        ax.set_title(title)
    return ax


def depth_trend(block_means: Sequence[Sequence[float]], confidence: float = 0.95) -> dict:
    """How a model's mean attention distance changes with depth, with the noise between runs taken into
    account (Fig. A.6: "rises with depth" for ViT, "not monotonic" for MViT).

    ``block_means``: one row per independent run (seed), the per-block mean distance over heads
    ``(runs, blocks)``; at least two runs. Each step between neighbouring blocks gets the mean over runs
    and its Student-t interval; a step *rises* or *falls* when its interval excludes zero, else it is
    within noise. The course is ``"rises"`` / ``"falls"`` (every step), ``"not monotonic"`` (at least
    one step up and one down), ``"rises or flat"`` / ``"falls or flat"`` (significant steps one way, the
    rest within noise) or ``"within noise"`` (no step beyond noise).
    Returns ``{"steps": (mean, low, high) per step, "signs": +1 / -1 / 0 per step, "course": str}``.
    """
    from scipy import stats

    values = torch.as_tensor(block_means, dtype=torch.float64)
    if values.ndim != 2 or values.shape[0] < 2 or values.shape[1] < 2:
        raise ValueError(f"block_means must be (runs >= 2, blocks >= 2), got shape {tuple(values.shape)}")
    diffs = values[:, 1:] - values[:, :-1]  # (runs, steps)
    n = diffs.shape[0]
    mean, sem = diffs.mean(dim=0), diffs.std(dim=0, unbiased=True) / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sem
    steps = [(float(m), float(m - h), float(m + h)) for m, h in zip(mean, half)]
    signs = [1 if low > 0 else -1 if high < 0 else 0 for _, low, high in steps]
    up, down = 1 in signs, -1 in signs
    if up and down:
        course = "not monotonic"
    elif up or down:
        word = "rises" if up else "falls"
        course = word if all(signs) else f"{word} or flat"
    else:
        course = "within noise"
    return {"steps": steps, "signs": signs, "course": course}


def distance_range(distances: Sequence[torch.Tensor]) -> float:
    """Dynamic range of a model's attention distances: largest minus smallest over all heads and blocks
    (the paper compares MViT's with ViT's at initialisation, Appendix B)."""
    values = torch.cat([d.flatten() for d in distances])
    return float(values.max() - values.min())
