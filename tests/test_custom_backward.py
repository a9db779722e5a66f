"""The fused operations and modules of mvit.fused give the values and gradients that plain autograd and the
plain modules give for the same computation, and keep less for the backward pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mvit
from mvit.blocks import MultiScaleBlock
from mvit.fused import FusedMultiScaleBlock, depthwise_conv3d, fuse, gelu_linear, layer_norm_linear, unfuse
from mvit.pooling import Pool


def grads_match(fused_fn, plain_fn, inputs, rtol=1e-12, atol=1e-12):
    """Same forward values (bit for bit) and the same gradients (float64) for fused_fn and plain_fn."""
    fused = [t.clone().requires_grad_() for t in inputs]
    plain = [t.clone().requires_grad_() for t in inputs]
    y1, y2 = fused_fn(*fused), plain_fn(*plain)
    torch.testing.assert_close(y1, y2, rtol=0, atol=0)
    grad = torch.randn_like(y2)
    y1.backward(grad)
    y2.backward(grad)
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a.grad, b.grad, rtol=rtol, atol=atol)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(
    "shape, kernel, stride",
    [
        ((2, 4, 4, 8, 8), (3, 3, 3), (1, 2, 2)),
        ((2, 4, 4, 16, 16), (3, 3, 3), (1, 8, 8)),  # kernel smaller than stride, as MViT-B's first K/V pooling
        ((1, 4, 5, 7, 7), (3, 3, 3), (1, 1, 1)),
        ((2, 4, 4, 9, 10), (3, 5, 5), (2, 4, 4)),  # odd sizes, strides that do not divide them
        ((2, 4, 3, 6, 6), (1, 3, 3), (1, 2, 2)),  # the image models' kernel
    ],
)
def test_depthwise_conv_matches_autograd(shape, kernel, stride, channels_last):
    torch.manual_seed(0)
    padding = tuple((k - 1) // 2 for k in kernel)
    x = torch.randn(shape, dtype=torch.double)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    weight = torch.randn(shape[1], 1, *kernel, dtype=torch.double)
    grads_match(
        lambda a, w: depthwise_conv3d(a, w, stride, padding),
        lambda a, w: F.conv3d(a, w, None, stride, padding, 1, shape[1]),
        (x, weight),
    )


def test_fused_operations_pass_gradcheck():
    torch.manual_seed(0)
    x = torch.randn(1, 2, 3, 6, 6, dtype=torch.double, requires_grad=True)
    kernel = torch.randn(2, 1, 3, 3, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: depthwise_conv3d(a, b, (1, 2, 2), (1, 1, 1)), (x, kernel))
    h = torch.randn(2, 5, 8, dtype=torch.double, requires_grad=True)
    weight = torch.randn(3, 8, dtype=torch.double, requires_grad=True)
    bias = torch.randn(3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(gelu_linear, (h, weight, bias))
    assert torch.autograd.gradcheck(lambda a, b: gelu_linear(a, b, None), (h, weight))
    norm, linear = torch.nn.LayerNorm(8).double(), torch.nn.Linear(8, 3).double()
    with torch.no_grad():
        norm.weight.normal_(), norm.bias.normal_()
    assert torch.autograd.gradcheck(lambda a: layer_norm_linear(a, norm, linear), (h,))


def test_gelu_linear_matches_autograd():
    torch.manual_seed(0)
    inputs = (
        torch.randn(2, 5, 8, dtype=torch.double),
        torch.randn(3, 8, dtype=torch.double),
        torch.randn(3, dtype=torch.double),
    )
    grads_match(gelu_linear, lambda h, w, b: F.linear(F.gelu(h), w, b), inputs)


def test_layer_norm_linear_matches_autograd():
    torch.manual_seed(0)
    inputs = (
        torch.randn(2, 5, 8, dtype=torch.double),
        torch.randn(8, dtype=torch.double),
        torch.randn(8, dtype=torch.double),
        torch.randn(3, 8, dtype=torch.double),
        torch.randn(3, dtype=torch.double),
    )

    fused_out = [t.clone().requires_grad_() for t in inputs]
    plain_in = [t.clone().requires_grad_() for t in inputs]
    norm, linear = torch.nn.LayerNorm(8, eps=1e-6).double(), torch.nn.Linear(8, 3).double()
    with torch.no_grad():
        for p, t in zip((norm.weight, norm.bias, linear.weight, linear.bias), inputs[1:]):
            p.copy_(t)
    y1 = layer_norm_linear(fused_out[0], norm, linear)
    y2 = F.linear(F.layer_norm(plain_in[0], (8,), plain_in[1], plain_in[2], 1e-6), plain_in[3], plain_in[4])
    torch.testing.assert_close(y1, y2, rtol=0, atol=0)
    grad = torch.randn_like(y2)
    y1.backward(grad)
    y2.backward(grad)
    fused_grads = (fused_out[0].grad, norm.weight.grad, norm.bias.grad, linear.weight.grad, linear.bias.grad)
    for a, b in zip(fused_grads, plain_in):
        torch.testing.assert_close(a, b.grad, rtol=1e-12, atol=1e-12)


def saved_bytes(fn, module, *inputs):
    """Bytes of the activations (not parameters) that autograd keeps for the backward pass of fn."""
    params = {p.untyped_storage().data_ptr() for p in module.parameters()}
    storages = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in params:
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(module, *inputs)
    return sum(storages.values())


def test_fused_modules_keep_fewer_tensors_for_backward():
    # What the fused path is for. The fused block keeps, for its MLP, the un-normalised input and the hidden
    # layer once: not norm(x), and not the hidden layer both before and after GELU. Fused conv pooling keeps
    # one copy of its grid, not a view of the whole Q/K/V projection.
    torch.manual_seed(0)
    cfg = mvit.get_config("mvit_tiny")
    spec = next(s for s in mvit.block_schedule(cfg) if s.dim_in == s.dim_out)
    block = MultiScaleBlock(spec).eval()
    t, h, w = spec.in_thw
    x = torch.randn(2, 1 + t * h * w, spec.dim_in, requires_grad=True)
    plain = saved_bytes(lambda m, t: m(t, spec.in_thw), block, x)
    fused = saved_bytes(lambda m, t: m(t, spec.in_thw), fuse(block), x)
    t, h, w = spec.out_thw  # the MLP runs on the block's output grid
    hidden = x.shape[0] * (1 + t * h * w) * int(spec.dim_in * cfg.mlp_ratio) * 4
    assert fused <= plain - hidden  # at least one (N, hidden) float32 tensor less

    pool = Pool("conv", 8, (3, 3, 3), (1, 2, 2))
    qkv = torch.randn(2, 1 + 4 * 8 * 8, 3, 2, 8, requires_grad=True)
    k = qkv.unbind(2)[1].transpose(1, 2)  # (B, h, N, d), a view of the projection
    kept = saved_bytes(lambda m, t: m(t, (4, 8, 8)), fuse(pool), k)
    assert kept < qkv.numel() * 4 / 2  # not the whole projection


def _gradients(model, x, dtype=None):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)  # the same drop-path draws in both runs
    with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
        logits = model(x)
    logits.float().logsumexp(1).sum().backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_fused_model_equals_the_plain_model_in_float64():
    # The plain modules are the reference: fusing changes neither the parameters nor the function.
    torch.manual_seed(0)
    model = mvit.build_model("mvit_tiny").double().train()
    keys = list(model.state_dict())
    x = torch.randn(2, 3, *model.config.input_size, dtype=torch.double)
    plain_out, plain = _gradients(model, x)
    fused_out, fused = _gradients(fuse(model), x)
    assert type(model.blocks[0]) is FusedMultiScaleBlock and list(model.state_dict()) == keys
    torch.testing.assert_close(fused_out, plain_out, rtol=0, atol=1e-12)
    for name in plain:
        torch.testing.assert_close(fused[name], plain[name], rtol=1e-9, atol=1e-12, msg=name)
    assert type(unfuse(model).blocks[0]) is MultiScaleBlock


def test_fused_model_equals_the_plain_model_under_bf16_autocast():
    torch.manual_seed(0)
    model = mvit.build_model("mvit_tiny").train()
    x = torch.randn(2, 3, *model.config.input_size)
    plain_out, plain = _gradients(model, x, torch.bfloat16)
    fused_out, fused = _gradients(fuse(model), x, torch.bfloat16)
    torch.testing.assert_close(fused_out, plain_out, rtol=2e-2, atol=2e-2)
    for name in plain:  # bf16 rounding of different (equally valid) orders of the same sums
        scale = plain[name].abs().max().item() + 1e-6
        assert (fused[name] - plain[name]).abs().max().item() <= 5e-2 * scale, name


@pytest.mark.slow
def test_bf16_autocast_gradients_stay_finite():
    """Regression: the depthwise conv's weight gradient overflowed to inf under CPU bf16 autocast for some
    inputs (seed 3 below) when accumulated in bf16; it is now accumulated in float32."""
    torch.manual_seed(0)
    model = mvit.build_model("mvit_b_16x4", input_size=(4, 64, 64))
    for seed in (0, 3):
        torch.manual_seed(seed)
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(torch.randn(1, 3, 4, 64, 64))
        torch.nn.functional.cross_entropy(logits.float(), torch.tensor([399])).backward()
        bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
        assert not bad, f"seed {seed}: non-finite gradients in {bad}"
        assert all(p.grad.dtype == p.dtype for p in model.parameters() if p.grad is not None)


def test_the_engine_trains_the_same_model_fused_or_plain(tmp_path, one_thread):
    from mvit.engine import load_checkpoint, load_config, train

    runs = {}
    for mode in ("true", "false"):
        cfg = load_config(
            "cpu_synthetic_mvit",
            [
                "data.train_size=32",
                "data.val_size=16",
                "data.batch_size=8",
                "optim.epochs=1",
                "optim.warmup_epochs=0",
                "run.log_every_steps=1",
                "run.progress=false",
                f"run.fused_ops={mode}",
                f"run.output_dir={tmp_path / mode}",
            ],
        )
        runs[mode] = train(cfg)
    fused, plain = ([s["loss"] for s in runs[m]["steps"]] for m in ("true", "false"))
    np.testing.assert_allclose(fused, plain, rtol=1e-4)
    a, b = (load_checkpoint(tmp_path / m / "checkpoint.pt")["model"] for m in ("true", "false"))
    assert list(a) == list(b)  # a fused run's checkpoint is a plain model's state dict
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-3, atol=1e-5)
