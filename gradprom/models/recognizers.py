"""Recognition models: the auxiliary task whose gradient may steer the enhancer.

Both are sized for small medical images (32–128 px): stride-1 3×3 stems, no early max-pool, so
a 64×64 image still has spatial detail left for the enhancer's output to matter.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gradprom.errors import GradpromError
from gradprom.models.enhancers import check_int

# torchvision-style depth names → BasicBlocks per stage.
RESNET_LAYERS: dict[int, tuple[int, int, int, int]] = {
    10: (1, 1, 1, 1),
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
}
UNET_MAX_DEPTH = 5


class BasicBlock(nn.Module):
    """ResNet basic block (two 3×3 conv+BN, ReLU); 1×1 projection when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """Small ResNet classifier: 3×3 stride-1 stem, 4 stages (stride 1, 2, 2, 2), GAP, linear."""

    def __init__(self, in_channels: int = 1, num_classes: int = 3, depth: int = 10, width: int = 16) -> None:
        super().__init__()
        check_int("resnet", "in_channels", in_channels)
        check_int("resnet", "num_classes", num_classes, lo=2)
        check_int("resnet", "depth", depth, choices=tuple(RESNET_LAYERS))
        check_int("resnet", "width", width)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        stages: list[nn.Module] = []
        c_in = width
        for i, n_blocks in enumerate(RESNET_LAYERS[depth]):
            c_out = width * 2**i
            stride = 1 if i == 0 else 2  # only a stage's first block changes the shape
            blocks = [BasicBlock(c_in, c_out, stride)]
            blocks += [BasicBlock(c_out, c_out, 1) for _ in range(n_blocks - 1)]
            stages.append(nn.Sequential(*blocks))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @property
    def encode_channels(self) -> int:
        """Channels of `encode`'s output, so a guided enhancer can size its layers at construction."""
        return self.fc.in_features

    def encode(self, x: Tensor) -> Tensor:
        """Deepest feature map [B, encode_channels, H/8, W/8] (after the last stage, before pooling).

        Semantic features for guided enhancers (sesr); a separate path, so `forward` stays as it was.
        """
        return self.stages(self.stem(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.stages(self.stem(x))).flatten(1))


def double_conv(c_in: int, c_out: int) -> nn.Sequential:
    """(conv3×3 → BN → ReLU) × 2, the UNet unit."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """UNet segmenter: `depth` max-pool levels, transposed-conv up-sampling, skip concatenation.

    Transposed conv (kernel 2, stride 2) rather than bilinear up-sampling: its backward is
    deterministic on GPU, which keeps gradient-strategy comparisons reproducible.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 3, depth: int = 3, width: int = 16) -> None:
        super().__init__()
        check_int("unet", "in_channels", in_channels)
        check_int("unet", "num_classes", num_classes, lo=2)
        self.depth = check_int("unet", "depth", depth, lo=1, hi=UNET_MAX_DEPTH)
        check_int("unet", "width", width)
        widths = [width * 2**i for i in range(depth + 1)]
        self.inc = double_conv(in_channels, widths[0])
        self.pool = nn.MaxPool2d(2)
        self.down = nn.ModuleList(double_conv(widths[i], widths[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(depth))
        )
        self.dec = nn.ModuleList(double_conv(2 * widths[i], widths[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def check_size(self, height: int, width: int) -> None:
        """Fail with the sizes that work instead of a shape mismatch deep inside torch.cat."""
        k = 2**self.depth
        if height % k or width % k:
            raise GradpromError(
                f"unet with depth={self.depth} needs image height and width divisible by {k} "
                f"(e.g. {2 * k}, {4 * k}, {8 * k} px), got {height}x{width}; "
                "crop/resize the images or lower depth"
            )

    @property
    def encode_channels(self) -> int:
        """Channels of `encode`'s output (width·2**depth), read by guided enhancers at construction."""
        return self.up[0].in_channels

    def encode(self, x: Tensor) -> Tensor:
        """Bottleneck feature map [B, encode_channels, H/2**depth, W/2**depth]: the encoder path only.

        Semantic features for guided enhancers (sesr); `forward` is left untouched.
        """
        self.check_size(x.shape[-2], x.shape[-1])
        x = self.inc(x)
        for down in self.down:
            x = down(self.pool(x))
        return x

    def forward(self, x: Tensor) -> Tensor:
        self.check_size(x.shape[-2], x.shape[-1])
        x = self.inc(x)
        skips = [x]
        for down in self.down:
            x = down(self.pool(x))
            skips.append(x)
        skips.pop()
        for up, dec in zip(self.up, self.dec, strict=True):
            # Skip first, then up-sampled features: channel order is part of the weights' meaning.
            x = dec(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)


def resnet(in_channels: int = 1, num_classes: int = 3, depth: int = 10, width: int = 16) -> ResNet:
    """ResNet-10/18/34 classifier for small images (BasicBlocks, widths width·(1, 2, 4, 8))."""
    return ResNet(in_channels=in_channels, num_classes=num_classes, depth=depth, width=width)


def unet(in_channels: int = 1, num_classes: int = 3, depth: int = 3, width: int = 16) -> UNet:
    """UNet segmenter with `depth` down levels (1..5); images must be divisible by 2**depth."""
    return UNet(in_channels=in_channels, num_classes=num_classes, depth=depth, width=width)
