"""Operational (Self-ONN) layers are Σ_q conv_q(x^q) computed as one convolution; Q = 1 is a plain convolution."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradprom.errors import GradpromError
from gradprom.models.selfonn import OpConv2d, OpConvTranspose2d, powers


def signed(*shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(1)) * 2 - 1


def test_q1_is_exactly_a_plain_convolution() -> None:
    torch.manual_seed(0)
    op = OpConv2d(3, 5, 3, stride=2, padding=1, q=1)
    plain = nn.Conv2d(3, 5, 3, stride=2, padding=1)
    plain.load_state_dict(op.conv.state_dict())
    x = signed(2, 3, 16, 16)
    assert torch.equal(op(x), plain(x))
    opt = OpConvTranspose2d(3, 5, 3, stride=2, padding=1, output_padding=1, q=1)
    plain_t = nn.ConvTranspose2d(3, 5, 3, stride=2, padding=1, output_padding=1)
    plain_t.load_state_dict(opt.conv.state_dict())
    assert torch.equal(opt(x), plain_t(x))


@pytest.mark.parametrize("q", [2, 3])
def test_op_conv_is_the_sum_of_one_convolution_per_power(q: int) -> None:
    torch.manual_seed(0)
    c_in = 3
    op = OpConv2d(c_in, 4, 3, stride=2, padding=1, q=q)
    x = signed(2, c_in, 12, 12)
    w, b = op.conv.weight, op.conv.bias
    want = sum(F.conv2d(x ** p, w[:, (p - 1) * c_in:p * c_in], stride=2, padding=1) for p in range(1, q + 1))
    want = want + b.view(1, -1, 1, 1)  # one bias, added once
    torch.testing.assert_close(op(x), want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(powers(x, q)[:, (q - 1) * c_in:], x ** q)  # the last block is x^Q


@pytest.mark.parametrize("q", [2, 3])
def test_transposed_op_conv_is_the_sum_of_one_transposed_convolution_per_power(q: int) -> None:
    torch.manual_seed(0)
    c_in = 4
    op = OpConvTranspose2d(c_in, 2, 3, stride=2, padding=1, output_padding=1, q=q)
    x = signed(2, c_in, 8, 8)
    w, b = op.conv.weight, op.conv.bias  # [Q·c_in, c_out, k, k]
    want = sum(F.conv_transpose2d(x ** p, w[(p - 1) * c_in:p * c_in], stride=2, padding=1, output_padding=1)
               for p in range(1, q + 1)) + b.view(1, -1, 1, 1)
    got = op(x)
    assert got.shape == (2, 2, 16, 16)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layer", [OpConv2d, OpConvTranspose2d])
def test_gradients_reach_every_power_block(layer: type) -> None:
    op = layer(2, 3, 3, q=3)
    x = signed(1, 2, 6, 6).requires_grad_()
    op(x).square().sum().backward()
    grad = op.conv.weight.grad
    blocks = grad.split(2, dim=0 if layer is OpConvTranspose2d else 1)
    assert len(blocks) == 3 and all(bool(g.abs().sum() > 0) for g in blocks)
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("q", [0, -1, 1.5, True])
def test_bad_q_is_one_line(q: object) -> None:
    with pytest.raises(GradpromError, match="q .*integer >= 1"):
        OpConv2d(1, 1, 3, q=q)  # type: ignore[arg-type]
