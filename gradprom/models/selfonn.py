"""Operational (Self-ONN) layers: a convolution over the powers of its input, `y = Σ_{q=1..Q} conv_q(x^q)`.

Why one convolution: the Q convolutions share stride, padding and output, so they are one convolution over
the channel-concatenated powers `[x, x², …, x^Q]` with the Q weight blocks side by side (block q, input
channels `(q-1)·C_in … q·C_in - 1`, is `conv_q`). That is one kernel launch instead of Q, and the Q biases,
which only ever appear summed, are one bias. With Q = 1 the layer *is* a plain `nn.Conv2d`. Powers grow
fast outside [-1, 1], so these layers expect inputs there (a tanh or an image mapped to [-1, 1] before them).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gradprom.errors import GradpromError


def powers(x: Tensor, q: int) -> Tensor:
    """[x, x², …, x^q] concatenated on the channel axis (q = 1: x itself, no copy)."""
    if q == 1:
        return x
    out = [x]
    for _ in range(q - 1):
        out.append(out[-1] * x)
    return torch.cat(out, dim=1)


def _check_q(q: object) -> int:
    if isinstance(q, bool) or not isinstance(q, int) or q < 1:
        raise GradpromError(f"operational layer: q (the number of powers) must be an integer >= 1, got {q!r}")
    return q


class OpConv2d(nn.Module):
    """`Σ_{q=1..Q} conv_q(x^q)` (+ one bias) as one `nn.Conv2d` over Q·c_in channels; `padding` as Conv2d's."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1, padding: int | str = 0, q: int = 3,
                 bias: bool = True) -> None:
        super().__init__()
        self.q = _check_q(q)
        self.conv = nn.Conv2d(c_in * self.q, c_out, k, stride=stride, padding=padding, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(powers(x, self.q))


class OpConvTranspose2d(nn.Module):
    """The transposed counterpart: `Σ_q convT_q(x^q)` (+ one bias) as one `nn.ConvTranspose2d`."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1, padding: int = 0, output_padding: int = 0,
                 q: int = 3, bias: bool = True) -> None:
        super().__init__()
        self.q = _check_q(q)
        self.conv = nn.ConvTranspose2d(c_in * self.q, c_out, k, stride=stride, padding=padding,
                                       output_padding=output_padding, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(powers(x, self.q))
