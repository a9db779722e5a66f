"""The hand-written backward passes (mvit.pooling._DepthwiseConv3d, mvit.blocks._GeluLinear) give the
gradients that plain autograd gives for the same forward computation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import mvit
from mvit.blocks import MLP, _GeluLinear
from mvit.pooling import Pool, _DepthwiseConv3d


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("shape, kernel, stride", [
    ((2, 4, 4, 8, 8), (3, 3, 3), (1, 2, 2)),
    ((2, 4, 4, 16, 16), (3, 3, 3), (1, 8, 8)),  # kernel smaller than stride, as MViT-B's first K/V pooling
    ((1, 4, 5, 7, 7), (3, 3, 3), (1, 1, 1)),
    ((2, 4, 4, 9, 10), (3, 5, 5), (2, 4, 4)),  # odd sizes, strides that do not divide them
    ((2, 4, 3, 6, 6), (1, 3, 3), (1, 2, 2)),  # the image models' kernel
])
def test_depthwise_conv_backward_matches_autograd(shape, kernel, stride, channels_last):
    torch.manual_seed(0)
    padding = tuple((k - 1) // 2 for k in kernel)
    x = torch.randn(shape, dtype=torch.double)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    weight = torch.randn(shape[1], 1, *kernel, dtype=torch.double)
    x1, w1 = x.clone().requires_grad_(), weight.clone().requires_grad_()
    x2, w2 = x.clone().requires_grad_(), weight.clone().requires_grad_()
    y1 = F.conv3d(x1, w1, None, stride, padding, 1, shape[1])
    y2 = _DepthwiseConv3d.apply(x2, w2, stride, padding)
    torch.testing.assert_close(y2, y1, rtol=0, atol=0)
    grad = torch.randn_like(y1)
    y1.backward(grad)
    y2.backward(grad)
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(w2.grad, w1.grad, rtol=1e-12, atol=1e-12)


def test_depthwise_conv_gradcheck():
    torch.manual_seed(0)
    x = torch.randn(1, 2, 3, 6, 6, dtype=torch.double, requires_grad=True)
    weight = torch.randn(2, 1, 3, 3, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: _DepthwiseConv3d.apply(a, b, (1, 2, 2), (1, 1, 1)), (x, weight))


def test_gelu_linear_matches_autograd_and_gradcheck():
    torch.manual_seed(0)
    h = torch.randn(2, 5, 8, dtype=torch.double)
    weight, bias = torch.randn(3, 8, dtype=torch.double), torch.randn(3, dtype=torch.double)
    plain = [t.clone().requires_grad_() for t in (h, weight, bias)]
    fused = [t.clone().requires_grad_() for t in (h, weight, bias)]
    y1 = F.linear(F.gelu(plain[0]), plain[1], plain[2])
    y2 = _GeluLinear.apply(*fused)
    torch.testing.assert_close(y2, y1, rtol=0, atol=0)
    grad = torch.randn_like(y1)
    y1.backward(grad)
    y2.backward(grad)
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(_GeluLinear.apply, tuple(t.clone().requires_grad_() for t in (h, weight, bias)))
    assert torch.autograd.gradcheck(lambda a, b: _GeluLinear.apply(a, b, None),
                                    (h.clone().requires_grad_(), weight.clone().requires_grad_()))


def test_mlp_and_conv_pool_keep_fewer_tensors_for_backward():
    # What the custom backward passes are for: the MLP keeps its hidden layer once, not twice (before and
    # after GELU), and conv pooling keeps one copy of its grid, not a view of the whole Q/K/V projection.
    torch.manual_seed(0)

    def saved_bytes(fn, module, *inputs):
        """Bytes of the activations (not parameters) that autograd keeps for the backward pass."""
        params = {p.untyped_storage().data_ptr() for p in module.parameters()}
        storages = {}

        def pack(t):
            if t.untyped_storage().data_ptr() not in params:
                storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn(module, *inputs)
        return sum(storages.values())

    mlp = MLP(16, 64, 16)
    x = torch.randn(4, 100, 16, requires_grad=True)
    hidden = 4 * 100 * 64 * 4
    assert saved_bytes(lambda m, t: m(t), mlp, x) == x.numel() * 4 + hidden  # fc1's input, GELU's input

    pool = Pool("conv", 8, (3, 3, 3), (1, 2, 2))
    qkv = torch.randn(2, 1 + 4 * 8 * 8, 3, 2, 8, requires_grad=True)
    k = qkv.unbind(2)[1].transpose(1, 2)  # (B, h, N, d), a view of the projection
    kept = saved_bytes(lambda m, t: m(t, (4, 8, 8)), pool, k)
    assert kept < qkv.numel() * 4 / 2  # not the whole projection


def test_model_gradients_in_float64_match_a_plain_autograd_model():
    # The same model with nn.Conv3d's own backward and a plain GELU MLP (swapped in below) as reference.
    torch.manual_seed(0)
    model = mvit.build_model("mvit_tiny", drop_path=0.0, dropout=0.0).double().train()
    x = torch.randn(2, 3, *model.config.input_size, dtype=torch.double)
    model(x).logsumexp(1).sum().backward()
    fast = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)

    def plain_mlp(self, t):
        return self.fc2(F.gelu(self.fc1(t)))

    def plain_conv(x, weight, stride, padding):
        return F.conv3d(x, weight, None, stride, padding, 1, x.shape[1])

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(MLP, "forward", plain_mlp)
        patch.setattr(_DepthwiseConv3d, "apply", plain_conv)
        model(x).logsumexp(1).sum().backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(fast[name], p.grad, rtol=1e-9, atol=1e-12, msg=name)


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
