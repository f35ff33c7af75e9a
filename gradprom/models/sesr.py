"""sesr: semantic-guided super-resolution enhancer (after Ren et al., TCBB 2023; seed-systems §3).

The paper's semantic extraction network (image-captioning pretraining) has no public code or data,
so the "semantic" features come from the auxiliary model gradprom already has: a frozen recognizer
trained on clean images (`guide`), read through its `encode(x)`. The SR network around it is
SRResNet-shaped (see enhancers.py) with the paper's two named parts: dynamic convolution in the
residual blocks and polarized self-attention after them.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradprom.errors import GradpromError
from gradprom.models.enhancers import SCALES, check_int, near_identity_tail, pixel_shuffle_upsampler


@runtime_checkable
class Guide(Protocol):
    """What sesr needs from a recognizer (ResNet and UNet have both): its deepest feature map."""

    encode_channels: int

    def encode(self, x: Tensor) -> Tensor: ...


class DynamicConv2d(nn.Module):
    """3×3 dynamic convolution (Chen et al. 2020): K kernels mixed per sample by attention.

    π = softmax(MLP(GAP(x)) / T); y_b = conv(x_b, Σ_k π_bk W_k) + Σ_k π_bk b_k. A high T early
    keeps π near uniform so every kernel is trained before the attention commits (the paper anneals
    30 → 1). T falls linearly over the first `anneal_steps` training-mode forwards; the count is a
    buffer so it is checkpointed and a resumed trial anneals exactly as an uninterrupted one.
    """

    T_START = 30.0
    T_END = 1.0

    def __init__(self, c_in: int, c_out: int, kernels: int = 4, anneal_steps: int = 200) -> None:
        super().__init__()
        self.c_in, self.c_out, self.kernels, self.anneal_steps = c_in, c_out, kernels, anneal_steps
        self.weight = nn.Parameter(torch.empty(kernels, c_out, c_in, 3, 3))
        self.bias = nn.Parameter(torch.empty(kernels, c_out))
        # Each kernel initialised like a plain nn.Conv2d, independently (as in the paper).
        for k in range(kernels):
            ref = nn.Conv2d(c_in, c_out, 3, padding=1)
            with torch.no_grad():
                self.weight[k].copy_(ref.weight)
                self.bias[k].copy_(ref.bias)
        hidden = max(4, c_in // 4)
        self.attention = nn.Sequential(nn.Linear(c_in, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, kernels))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def temperature(self) -> Tensor:
        """T at the current step, as a tensor (no host sync on GPU)."""
        if self.anneal_steps == 0:
            return torch.ones((), device=self.step.device) * self.T_END
        frac = (self.step.float() / self.anneal_steps).clamp(max=1.0)
        return self.T_START + (self.T_END - self.T_START) * frac

    def attention_weights(self, x: Tensor) -> Tensor:
        """π [B, K]: per-sample mixing weights of the K kernels."""
        z = self.attention(x.mean(dim=(2, 3)))
        return torch.softmax(z / self.temperature().to(z.dtype), dim=1)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        pi = self.attention_weights(x)
        if self.training:
            self.step.add_(1)
        # Mix the kernels per sample, then one grouped conv over the batch (groups=B): one kernel
        # launch instead of K convs, and each image only ever sees its own mixed kernel.
        weight = torch.einsum("bk,koihw->boihw", pi, self.weight).reshape(b * self.c_out, self.c_in, 3, 3)
        bias = (pi @ self.bias).reshape(b * self.c_out)
        y = F.conv2d(x.reshape(1, b * self.c_in, h, w), weight, bias, padding=1, groups=b)
        return y.reshape(b, self.c_out, h, w)


class PolarizedSelfAttention(nn.Module):
    """Polarized self-attention (Liu et al. 2021), parallel form: x·A_ch(x) + x·A_sp(x).

    Each branch keeps full resolution in the dimension it attends over and collapses the other
    one completely (C/2 channels × HW), which is why it is cheap enough for a pixel-level SR body.
    As in the paper, the spatial branch's pooled query is softmax-normalised over its channels; the
    channel branch's LayerNorm is left out (sigmoid alone, as in seed-systems.md §3). At init both
    sigmoids sit near 0.5, so the block starts close to the identity.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = max(1, channels // 2)
        self.ch_value = nn.Conv2d(channels, half, 1)
        self.ch_query = nn.Conv2d(channels, 1, 1)
        self.ch_up = nn.Conv2d(half, channels, 1)
        self.sp_query = nn.Conv2d(channels, half, 1)
        self.sp_value = nn.Conv2d(channels, half, 1)

    def channel_attention(self, x: Tensor) -> Tensor:
        """A_ch [B, C, 1, 1]: value [B, C/2, HW] weighted by softmax over HW of a 1-channel query."""
        v = self.ch_value(x).flatten(2)
        q = torch.softmax(self.ch_query(x).flatten(2), dim=2)
        z = torch.bmm(v, q.transpose(1, 2)).unsqueeze(-1)  # [B, C/2, 1, 1]
        return torch.sigmoid(self.ch_up(z))

    def spatial_attention(self, x: Tensor) -> Tensor:
        """A_sp [B, 1, H, W]: globally pooled query [B, C/2] (softmax) times value [B, C/2, HW]."""
        q = torch.softmax(self.sp_query(x).mean(dim=(2, 3)), dim=1).unsqueeze(1)  # [B, 1, C/2]
        v = self.sp_value(x).flatten(2)
        return torch.sigmoid(torch.bmm(q, v)).reshape(x.shape[0], 1, *x.shape[2:])

    def forward(self, x: Tensor) -> Tensor:
        return x * self.channel_attention(x) + x * self.spatial_attention(x)


class DynamicResidualBlock(nn.Module):
    """dynamic conv → ReLU → conv, plus skip (no BatchNorm, for the reasons in enhancers.py)."""

    def __init__(self, channels: int, kernels: int, anneal_steps: int) -> None:
        super().__init__()
        self.conv1 = DynamicConv2d(channels, channels, kernels=kernels, anneal_steps=anneal_steps)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


class SESR(nn.Module):
    """Semantic-guided SR enhancer: output = bicubic(input) + residual from a guided SR body.

    head → `blocks` dynamic-conv residual blocks (+ long skip) → PSA → semantic fusion →
    pixel-shuffle up-sampling → tail. The guide is a frozen recognizer; it is deliberately not a
    submodule, so parameters(), state_dict(), .to() and the gradient strategies see only θ (the SR
    network's own weights). With guide=None the fusion branch gets zeros [B, guide_channels, H, W]
    (guide_channels defaults to `channels`), so the model has the same parameter names and works
    unchanged, and preflight needs no pretrained recognizer.
    """

    TAIL_INIT_SCALE = 1e-2  # the same near-identity start as SRResNet (see its docstring)

    def __init__(
        self,
        in_channels: int = 1,
        blocks: int = 4,
        channels: int = 16,
        scale: int = 2,
        kernels: int = 4,
        anneal_steps: int = 200,
        guide: nn.Module | None = None,
        *,
        guide_channels: int | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = check_int("sesr", "in_channels", in_channels)
        check_int("sesr", "blocks", blocks)
        self.channels = check_int("sesr", "channels", channels)
        self.scale = check_int("sesr", "scale", scale, choices=SCALES)
        check_int("sesr", "kernels", kernels)
        check_int("sesr", "anneal_steps", anneal_steps, lo=0)
        if guide is not None:
            if not isinstance(guide, Guide):
                raise GradpromError(
                    f"sesr: guide must be a recognizer with encode(x) and encode_channels (resnet, unet), "
                    f"got {type(guide).__name__}"
                )
            have = check_int("sesr", "guide.encode_channels", guide.encode_channels)
            if guide_channels is not None and guide_channels != have:
                raise GradpromError(f"sesr: guide_channels={guide_channels} but the guide encodes {have} channels")
            guide_channels = have
        # Without a guide the channel count only has to be fixed; `channels` is as good as any.
        guide_channels = channels if guide_channels is None else guide_channels
        self.guide_channels = check_int("sesr", "guide_channels", guide_channels)
        # A plain tuple attribute: nn.Module only registers Module/Parameter/buffer attributes.
        self._guide: tuple[nn.Module, ...] = (guide,) if guide is not None else ()

        self.head = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1), nn.PReLU(channels))
        self.body = nn.Sequential(
            *(DynamicResidualBlock(channels, kernels, anneal_steps) for _ in range(blocks)),
            nn.Conv2d(channels, channels, 3, padding=1),
        )
        self.psa = PolarizedSelfAttention(channels)
        self.semantic = nn.Conv2d(self.guide_channels, channels, 1)
        # Concatenation + 1×1 conv rather than FiLM: it lets the semantics add new feature directions,
        # not only rescale existing ones, and with zero semantics it reduces to a plain 1×1 conv.
        self.fuse = nn.Conv2d(2 * channels, channels, 1)
        self.upsample = pixel_shuffle_upsampler(channels, scale)
        self.tail = near_identity_tail(channels, in_channels, self.TAIL_INIT_SCALE)

    @property
    def guide(self) -> nn.Module | None:
        """The frozen recognizer whose encoder features steer the SR body, or None."""
        return self._guide[0] if self._guide else None

    def gate_parameters(self) -> list[nn.Parameter]:
        """The last layer's parameters, for the strategies' cheap "gate on the last layer" option."""
        return list(self.tail.parameters())

    def base(self, x: Tensor) -> Tensor:
        """The fixed path the network learns a residual to: identity, or bicubic (as SRResNet)."""
        if self.scale == 1:
            return x
        return F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)

    def guide_features(self, x: Tensor) -> Tensor:
        """Guide encoder features of the input at output size, [B, guide_channels, h, w]; zeros without a guide.

        Bilinear (not bicubic) up-sampling for the guide: it stays inside [0, 1], the range the
        recognizer was trained on. No gradient: the guide is frozen and not part of θ.
        """
        guide = self.guide
        if guide is None:
            return x.new_zeros(x.shape[0], self.guide_channels, *x.shape[-2:])
        if guide.training:
            raise GradpromError("sesr: the guide is in training mode (its BatchNorm statistics would drift); "
                                "pass guide.eval()")
        with torch.no_grad():
            up = x if self.scale == 1 else F.interpolate(x, scale_factor=self.scale, mode="bilinear",
                                                         align_corners=False)
            return guide.encode(up)

    def forward(self, x: Tensor) -> Tensor:
        # No clamp: clamping would zero the gradient wherever the output leaves [0, 1].
        feat = self.head(x)
        feat = self.psa(feat + self.body(feat))
        sem = F.interpolate(self.semantic(self.guide_features(x)), size=feat.shape[-2:], mode="bilinear",
                            align_corners=False)
        # Residual fusion: the semantics add to the SR features rather than replace them.
        feat = feat + self.fuse(torch.cat([feat, sem], dim=1))
        return self.base(x) + self.tail(self.upsample(feat))


def sesr(
    in_channels: int = 1,
    blocks: int = 4,
    channels: int = 16,
    scale: int = 2,
    kernels: int = 4,
    anneal_steps: int = 200,
    guide: nn.Module | None = None,
) -> SESR:
    """Semantic-guided SR enhancer (dynamic conv, polarized self-attention, fused recognizer features)."""
    return SESR(in_channels=in_channels, blocks=blocks, channels=channels, scale=scale, kernels=kernels,
                anneal_steps=anneal_steps, guide=guide)
