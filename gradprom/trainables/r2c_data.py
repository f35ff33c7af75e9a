"""The `r2c_gan` pipeline's data: two unpaired pools, fixed evaluation inputs, and the pool of earlier fakes.

Paired datasets (any registered one with a classification task) are made unpaired: the training split is
cut, seeded, into two disjoint halves, the first degraded once by `cfg.degradation` (poor-quality pool), the
second kept clean (good-quality pool), so no poor image has its own clean version in the good pool. Their
val/test splits are degraded once from fixed streams (the same images task_driven scores) and keep the
clean images as targets. Unpaired datasets (`UnpairedData`, e.g. `r2c_release`) bring their own pools and
poor val/test images without clean targets. Images stay in [0, 1] here; the models see [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from gradprom.datasets import TaskData, parse_degradation
from gradprom.datasets.unpaired import GOOD, POOR, UnpairedData
from gradprom.errors import GradpromError
from gradprom.trainables.build import degrade_fixed, seeded_generator
from gradprom.trainables.config import TrialConfig


@dataclass
class EvalSet:
    """Poor-quality inputs, their clean images (None: an unpaired dataset has none) and labels."""

    inputs: Tensor
    clean: Tensor | None
    labels: Tensor


@dataclass
class GanData:
    """The two unpaired training pools (each with its labels) and the fixed evaluation sets."""

    poor: Tensor  # [Na, C, S, S] poor-quality pool, in [0, 1]
    poor_labels: Tensor
    good: Tensor  # [Nb, C, S, S] good-quality pool (other images)
    good_labels: Tensor
    val: EvalSet
    test: EvalSet


def to_signed(x: Tensor) -> Tensor:
    """[0, 1] images → [-1, 1], what the operational layers expect."""
    return x * 2 - 1


def to_unit(x: Tensor) -> Tensor:
    """[-1, 1] generator output → [0, 1] images."""
    return ((x + 1) / 2).clamp(0, 1)


def _degraded(cfg: TrialConfig, images: Tensor, stream: int) -> Tensor:
    """`images` degraded once from the fixed stream (seed, `stream`); clamped to [0, 1] like an image file and,
    under downsampling, resized back (bilinear) so the generator maps a size to itself."""
    x = degrade_fixed(parse_degradation(cfg.degradation), images, seeded_generator(images.device, cfg.seed, stream))
    if x.shape != images.shape:
        x = F.interpolate(x, size=images.shape[-2:], mode="bilinear", align_corners=False)
    return x.clamp(0, 1)


def gan_data(cfg: TrialConfig, data: TaskData) -> GanData:
    """The pools and evaluation sets of `data` (already on the trial's device), deterministic by cfg.seed."""
    train = data.train
    if isinstance(data, UnpairedData):
        poor, good = data.pools == POOR, data.pools == GOOD
        if not poor.any() or not good.any():
            raise GradpromError(f"dataset '{data.name}': its training split holds {int(poor.sum())} poor-quality and "
                                f"{int(good.sum())} good-quality images; r2c_gan needs both pools (raise -p n_train)")
        return GanData(train.images[poor], train.targets[poor], train.images[good], train.targets[good],
                       EvalSet(data.val.images, None, data.val.targets),
                       EvalSet(data.test.images, None, data.test.targets))
    if len(train) < 2:
        raise GradpromError(f"r2c_gan cuts the training split into two pools; dataset '{data.name}' has "
                            f"{len(train)} training image(s): use more (-p n_train)")
    order = torch.randperm(len(train), generator=seeded_generator(torch.device("cpu"), cfg.seed, 606))
    order = order.to(train.images.device)
    half = (len(train) + 1) // 2
    poor_idx, good_idx = order[:half], order[half:]
    return GanData(_degraded(cfg, train.images[poor_idx], 505), train.targets[poor_idx],
                   train.images[good_idx], train.targets[good_idx],
                   EvalSet(_degraded(cfg, data.val.images, 101), data.val.images, data.val.targets),
                   EvalSet(_degraded(cfg, data.test.images, 202), data.test.images, data.test.targets))


def pool_sizes(n_train: int) -> tuple[int, int]:
    """(poor, good) pool sizes a paired training split of `n_train` images is cut into."""
    return (n_train + 1) // 2, n_train // 2


class FakePool:
    """CycleGAN's pool of earlier fakes: the discriminator sees, for each new fake, with probability ½ a
    stored older one (which the new fake replaces), so it does not chase the generator's latest output.
    Size 0 is off. Its random draws come from the caller's seeded generator, two per image whatever the
    branch, so a run's draws depend only on (seed, epoch, step); its contents are checkpointed."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.images: Tensor | None = None
        self.count = 0

    def query(self, fakes: Tensor, gen: torch.Generator) -> Tensor:
        if self.size == 0:
            return fakes
        if self.images is None:
            self.images = fakes.new_zeros((self.size, *fakes.shape[1:]))
        coin = torch.rand(len(fakes), generator=gen).tolist()
        slot = torch.randint(self.size, (len(fakes),), generator=gen).tolist()
        out = []
        for image, c, j in zip(fakes, coin, slot, strict=True):
            if self.count < self.size:  # filling up: store it and show it
                self.images[self.count] = image
                self.count += 1
                out.append(image)
            elif c < 0.5:  # show an older fake, keep the new one in its place
                out.append(self.images[j].clone())
                self.images[j] = image
            else:
                out.append(image)
        return torch.stack(out)

    def state_dict(self) -> dict[str, Tensor]:
        kept = self.images[:self.count] if self.images is not None else torch.zeros(0)
        return {"images": kept.detach().cpu(), "count": torch.tensor(self.count)}

    def load_state_dict(self, state: dict[str, Tensor], device: torch.device) -> None:
        self.count = int(state["count"])
        if self.count:
            kept = state["images"].to(device)
            self.images = kept.new_zeros((self.size, *kept.shape[1:]))
            self.images[:self.count] = kept
