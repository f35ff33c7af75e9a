"""A user's plugin module (named in GRADPROM_PLUGINS): one more dataset and one more strategy."""

from __future__ import annotations

import torch

from gradprom.datasets import TaskData, get_dataset, register_dataset
from gradprom.strategies import Strategy, register_strategy


@register_dataset("synthetic_shifted", tasks=("classification", "segmentation"),
                  help="the synthetic images drawn from another seed stream (a plugin's dataset)")
def synthetic_shifted(task: str, image_size: int, seed: int, n_train: int = 512, n_val: int = 128,
                      n_test: int = 128) -> TaskData:
    data = get_dataset("synthetic", task=task, image_size=image_size, seed=seed + 1000, n_train=n_train,
                       n_val=n_val, n_test=n_test)
    data.name = "synthetic_shifted"
    return data


class HalfPromotion(Strategy):
    """Always add half of λ·g_vr (a plugin's strategy)."""

    name = "half_promotion"

    def weights(self, cos: torch.Tensor) -> torch.Tensor:
        return torch.full_like(cos, 0.5)


register_strategy("half_promotion", HalfPromotion)
