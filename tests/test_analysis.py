"""Mean attention distance (Appendix B) and the frame-shuffle test (Table 9): hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import mvit
from mvit.analysis import (
    TokenGrid,
    block_grids,
    frame_shuffle_accuracy,
    max_distance,
    mean_attention_distance,
    measure_attention_distance,
    shuffle_frames,
    token_centers,
)
from mvit.attention import AttentionMap
from mvit.configs import MViTConfig

# A 3x3 grid of tokens, 4 pixels apart: a 12x12 image cut into 4x4 patches, one block, no pooling.
GRID3 = MViTConfig(
    input_size=(1, 12, 12),
    patch_kernel=(1, 4, 4),
    patch_stride=(1, 4, 4),
    patch_padding=(0, 0, 0),
    embed_dim=8,
    num_heads=1,
    stage_depths=(1,),
    q_stride=None,
    kv_stride=None,
    pos_embed="joint",
)
# Mean distance between two points drawn uniformly from the 3x3 grid {0,1,2}^2 (ordered pairs, 81 of
# them): per axis |d| = 0, 1, 2 occurs 3, 4, 2 times out of 9, so the pairs at distance 1, 2, sqrt(2),
# sqrt(5), sqrt(8) number 24, 12, 16, 16, 4 (and 9 at distance 0).
UNIFORM_3x3 = (24 * 1 + 12 * 2 + 16 * math.sqrt(2) + 16 * math.sqrt(5) + 4 * math.sqrt(8)) / 81


def one_block_map(attn: torch.Tensor, q_thw, kv_thw, has_cls=True) -> list[AttentionMap]:
    return [AttentionMap(attn, tuple(q_thw), tuple(kv_thw), has_cls)]


def test_token_centers_order_and_place():
    centers = token_centers((2, 2, 3), (2.0, 4.0, 4.0), (0.5, 1.5, 1.5))
    assert centers.shape == (12, 3)
    # time outer, then rows, then columns
    assert centers[0].tolist() == [0.5, 1.5, 1.5]
    assert centers[1].tolist() == [0.5, 1.5, 5.5]
    assert centers[3].tolist() == [0.5, 5.5, 1.5]
    assert centers[6].tolist() == [2.5, 1.5, 1.5]
    assert centers[-1].tolist() == [2.5, 5.5, 9.5]


def test_pooled_grid_centres_by_hand():
    tokens = TokenGrid((1, 1, 8), (1.0, 1.0, 4.0), (0.0, 0.0, 0.0))  # 8 tokens at pixels 0, 4, ..., 28
    # kernel 3, stride 2, padding 1: output m covers tokens 2m-1..2m+1, centred on token 2m
    pooled = tokens.pooled((1, 1, 3), (1, 1, 2), (0, 0, 1))
    assert pooled.thw == (1, 1, 4)
    assert token_centers(*pooled)[:, 2].tolist() == [0.0, 8.0, 16.0, 24.0]
    # kernel 2, stride 2, no padding: output m covers tokens 2m, 2m+1, centred between them
    pooled = tokens.pooled((1, 1, 2), (1, 1, 2), (0, 0, 0))
    assert token_centers(*pooled)[:, 2].tolist() == [2.0, 10.0, 18.0, 26.0]


def test_block_grids_of_mvit_b():
    grids = block_grids(mvit.get_config("mvit_b_16x4"))
    q0, kv0 = grids[0]
    # cube embedding 3x7x7 / stride 2x4x4 / padding 1x3x3: token i is centred on pixel 4i, frame 2i
    assert q0 == TokenGrid((8, 56, 56), (2.0, 4.0, 4.0), (0.0, 0.0, 0.0))
    # K/V pooled 3x3x3 with stride 1x8x8: key m is centred on token 8m, i.e. pixel 32m
    assert kv0.thw == (8, 7, 7)
    assert sorted(set(token_centers(*kv0)[:, 2].tolist())) == [32.0 * m for m in range(7)]
    # Q pooled (stride 2) in blocks 1, 3 and 14: cumulative strides 8, 16, 32 pixels
    assert [q.stride[1] for q, _ in grids] == [4.0] + [8.0] * 2 + [16.0] * 11 + [32.0] * 2
    # keys sit 32 pixels apart, except in the Q-pooling blocks, whose K/V are pooled from the block's
    # finer input grid (14x14 keys at 16 pixels, as torchvision's mvit_v1_b and PySlowFast build them)
    assert [kv.stride[1] for _, kv in grids] == [32.0, 16.0, 32.0, 16.0] + [32.0] * 10 + [16.0, 32.0]
    assert [kv.thw for _, kv in grids][:4] == [(8, 7, 7), (8, 14, 14), (8, 7, 7), (8, 14, 14)]


def test_even_pooling_kernel_shifts_the_keys():
    # Table 15's "kernel = stride": K/V kernel 1x8x8, stride 1x8x8, padding (8 - 1) // 2 = 3 in block 0, so
    # key m covers tokens 8m-3 .. 8m+4 and is centred between tokens 8m and 8m+1: pixel 32m + 2
    _, kv0 = block_grids(mvit.get_config("mvit_b_16x4", pool_kernel="stride"))[0]
    assert kv0.thw == (8, 7, 7)
    assert sorted(set(token_centers(*kv0)[:, 2].tolist())) == [32.0 * m + 2 for m in range(7)]


def test_uniform_attention_over_3x3_grid():
    attn = torch.full((2, 1, 10, 10), 0.1)  # class token + 9 tokens, every query attends uniformly
    maps = one_block_map(attn, (1, 3, 3), (1, 3, 3))
    pixels = mean_attention_distance(maps, GRID3, normalize=False)
    assert len(pixels) == 1 and pixels[0].shape == (1,)
    torch.testing.assert_close(pixels[0], torch.tensor([4 * UNIFORM_3x3]))
    normalised = mean_attention_distance(maps, GRID3)
    torch.testing.assert_close(normalised[0], torch.tensor([4 * UNIFORM_3x3 / math.sqrt(11**2 + 11**2)]))
    # "zero": the 1/10 paid to the class token counts as distance 0 instead of being redistributed
    zero = mean_attention_distance(maps, GRID3, normalize=False, cls_token="zero")
    torch.testing.assert_close(zero[0], torch.tensor([0.9 * 4 * UNIFORM_3x3]))


def test_attention_to_itself_has_distance_zero():
    attn = torch.eye(10).expand(3, 2, 10, 10)  # two heads, every token (and the class token) on itself
    distances = mean_attention_distance(one_block_map(attn, (1, 3, 3), (1, 3, 3)), GRID3)
    assert torch.equal(distances[0], torch.zeros(2))


def test_attention_to_one_pooled_key():
    # 8x8 image, 2x2 patches: a 4x4 grid centred on pixels 0.5 + 2i. Keys pooled 3x3 / stride 2 / padding 1:
    # a 2x2 grid centred on tokens 0 and 2, i.e. pixels 0.5 and 4.5.
    cfg = MViTConfig(
        input_size=(1, 8, 8),
        patch_kernel=(1, 2, 2),
        patch_stride=(1, 2, 2),
        patch_padding=(0, 0, 0),
        embed_dim=8,
        num_heads=1,
        stage_depths=(1,),
        q_stride=None,
        kv_stride=(1, 2, 2),
        pool_kernel=(1, 3, 3),
        cls_token=False,
    )
    _, kv = block_grids(cfg)[0]
    assert kv.thw == (1, 2, 2)
    attn = torch.zeros(1, 1, 16, 4)
    attn[..., 3] = 1.0  # every query looks at the last key, centred on pixel (4.5, 4.5)
    got = mean_attention_distance(one_block_map(attn, (1, 4, 4), (1, 2, 2), has_cls=False), cfg, normalize=False)
    expected = sum(math.hypot(0.5 + 2 * i - 4.5, 0.5 + 2 * j - 4.5) for i in range(4) for j in range(4)) / 16
    torch.testing.assert_close(got[0], torch.tensor([expected]))


def test_time_counts_only_with_a_frame_scale():
    cfg = MViTConfig(
        input_size=(2, 1, 1),
        patch_kernel=(1, 1, 1),
        patch_stride=(1, 1, 1),
        patch_padding=(0, 0, 0),
        embed_dim=8,
        num_heads=1,
        stage_depths=(1,),
        q_stride=None,
        kv_stride=None,
        pos_embed="joint",
    )
    attn = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).view(1, 1, 2, 2)  # each frame looks at the other one
    maps = one_block_map(attn, (2, 1, 1), (2, 1, 1), has_cls=False)
    assert mean_attention_distance(maps, cfg, normalize=False)[0].item() == 0.0
    assert mean_attention_distance(maps, cfg, normalize=False, frame_scale=16.0)[0].item() == 16.0
    assert mean_attention_distance(maps, cfg, frame_scale=16.0)[0].item() == 1.0  # the farthest two points
    assert max_distance((8, 224, 224)) == pytest.approx(223 * math.sqrt(2))


@pytest.mark.parametrize("name", ["mvit_tiny", "vit_tiny"])
def test_real_tiny_models(name):
    torch.manual_seed(0)
    model = mvit.build_model(name, input_size=(8, 32, 32))
    x = torch.randn(2, 3, *model.config.input_size)
    distances = measure_attention_distance(model, [x, (x[:1], torch.zeros(1))])
    assert [d.shape for d in distances] == [(spec.num_heads,) for spec in model.schedule]
    values = torch.cat(distances)
    assert values.gt(0).all() and values.lt(1).all()
    # a batch of one clip twice gives the same as that clip alone
    twice = measure_attention_distance(model, [x[:1], x[:1]])
    once = measure_attention_distance(model, [x[:1]])
    torch.testing.assert_close(torch.cat(twice), torch.cat(once))


def test_images_are_measured_like_one_frame_clips():
    torch.manual_seed(0)
    model = mvit.build_model("mvit_tiny_img")
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(
        torch.cat(measure_attention_distance(model, [images])),
        torch.cat(measure_attention_distance(model, [images.unsqueeze(2)])),
    )


def test_maps_from_another_input_size_need_it_named():
    model = mvit.build_model("mvit_tiny")
    x = torch.randn(1, 3, 8, 96, 96)
    _, maps = model.forward_features(x, return_attention=True)
    with pytest.raises(ValueError, match="input_size"):
        mean_attention_distance(maps, model.config)
    assert len(mean_attention_distance(maps, model.config, input_size=(8, 96, 96))) == len(model.schedule)
    with pytest.raises(ValueError, match="cls_token"):
        mean_attention_distance(maps, model.config, input_size=(8, 96, 96), cls_token="keep")
    with pytest.raises(ValueError, match="2 attention maps"):
        mean_attention_distance(maps[:2], model.config, input_size=(8, 96, 96))


def test_shuffle_frames_permutes_each_clip():
    x = torch.arange(8.0).view(1, 1, 8, 1, 1).expand(6, 3, 8, 2, 2).contiguous()  # frame t holds the value t
    shuffled = shuffle_frames(x, torch.Generator().manual_seed(0))
    assert shuffled.shape == x.shape
    orders = shuffled[:, 0, :, 0, 0]
    assert torch.equal(orders.sort(dim=1).values, x[:, 0, :, 0, 0])  # a permutation of the frames
    assert (shuffled == shuffled[:, :1]).all()  # every channel and pixel of a frame moves together
    assert len({tuple(o.tolist()) for o in orders}) > 1  # each clip gets its own order
    assert not torch.equal(orders, x[:, 0, :, 0, 0])
    views = shuffle_frames(x.view(2, 3, 3, 8, 2, 2))  # (B, V, C, T, H, W)
    assert views.shape == (2, 3, 3, 8, 2, 2)


class _Clips(torch.utils.data.Dataset):
    """Clips whose brightness rises (label 1) or falls (label 0) over time; the green channel's mean
    also carries a noisy hint of the label, which a model blind to time can read."""

    def __init__(self, n: int = 32) -> None:
        g = torch.Generator().manual_seed(0)
        self.labels = torch.arange(n) % 2
        ramp = torch.linspace(-1, 1, 8).view(1, 8, 1, 1)
        hint = torch.tensor([0.0, 1.0, 0.0]).view(3, 1, 1, 1)
        self.clips = [
            (2 * y - 1) * ramp
            + 0.1 * torch.randn(3, 8, 4, 4, generator=g)
            + hint * (0.3 * (2 * y - 1) + 0.3 * torch.randn((), generator=g))
            for y in self.labels
        ]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.clips[i], self.labels[i]


class _BagOfFrames(nn.Module):
    """Classifies by the green channel's mean over all frames: blind to their order."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x):
        green = x[:, 1].mean(dim=(1, 2, 3))
        return torch.stack((-green, green), dim=1) * self.scale


class _LastMinusFirst(nn.Module):
    """Classifies by whether the last frame is brighter than the first: uses their order."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x):
        rise = (x[:, :, -1] - x[:, :, 0]).mean(dim=(1, 2, 3))
        return torch.stack((-rise, rise), dim=1) * self.scale


def test_frame_shuffle_leaves_a_bag_of_frames_model_unchanged():
    loader = torch.utils.data.DataLoader(_Clips(), batch_size=8)
    result = frame_shuffle_accuracy(_BagOfFrames(), loader, num_classes=2)
    assert 50.0 < result["ordered"] < 100.0  # right often but not always, so mixing clips would show
    assert result["shuffled"] == result["ordered"] and result["change"] == 0.0


def test_frame_shuffle_hurts_a_model_that_uses_order():
    loader = torch.utils.data.DataLoader(_Clips(), batch_size=8)
    result = frame_shuffle_accuracy(_LastMinusFirst(), loader, num_classes=2, seed=1)
    assert result["ordered"] == 100.0
    assert result["shuffled"] < 90.0 and result["change"] == result["shuffled"] - result["ordered"]
    assert frame_shuffle_accuracy(_LastMinusFirst(), loader, num_classes=2, seed=1) == result  # repeatable


def test_frame_shuffle_by_class_group():
    """Group accuracies come from the confusion matrices: with one group per class they are the
    per-class accuracies, and the clip-weighted mean of the groups is the overall accuracy."""
    loader = torch.utils.data.DataLoader(_Clips(), batch_size=8)
    result = frame_shuffle_accuracy(
        _LastMinusFirst(), loader, num_classes=2, seed=1, groups={"falls": [0], "rises": [1]}
    )
    groups = result["groups"]
    assert groups["falls"]["num_samples"] == groups["rises"]["num_samples"] == 16
    assert groups["falls"]["ordered"] == groups["rises"]["ordered"] == 100.0
    mean_shuffled = (groups["falls"]["shuffled"] + groups["rises"]["shuffled"]) / 2
    assert mean_shuffled == pytest.approx(result["shuffled"])
    assert groups["rises"]["change"] == groups["rises"]["shuffled"] - 100.0
    bag = frame_shuffle_accuracy(_BagOfFrames(), loader, num_classes=2, groups={"all": [0, 1]})
    assert bag["groups"]["all"]["ordered"] == bag["ordered"] and bag["groups"]["all"]["change"] == 0.0


def test_depth_trend_separates_steps_from_noise():
    from mvit.analysis import depth_trend

    rising = [[0.1, 0.2, 0.3], [0.12, 0.21, 0.33], [0.09, 0.19, 0.29]]
    assert depth_trend(rising)["course"] == "rises" and depth_trend(rising)["signs"] == [1, 1]
    from scipy import stats

    d = [r[1] - r[0] for r in rising]
    expected = stats.t.interval(0.95, 2, loc=sum(d) / 3, scale=stats.sem(d))
    assert depth_trend(rising)["steps"][0][1:] == pytest.approx(expected)
    zigzag = [[0.1, 0.3, 0.2], [0.11, 0.32, 0.21], [0.1, 0.29, 0.18]]
    assert depth_trend(zigzag)["course"] == "not monotonic"
    # the same zigzag in the mean, but the runs disagree about the second step: not beyond noise
    noisy = [[0.1, 0.3, 0.35], [0.11, 0.32, 0.1], [0.1, 0.29, 0.15]]
    trend = depth_trend(noisy)
    assert trend["signs"] == [1, 0] and trend["course"] == "rises or flat"
    low, high = trend["steps"][1][1:]
    assert low < 0 < high
    assert depth_trend([[0.1, 0.2], [0.2, 0.1]])["course"] == "within noise"
    with pytest.raises(ValueError, match="runs >= 2"):
        depth_trend([[0.1, 0.2, 0.3]])
