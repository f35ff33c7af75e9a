"""A user's plugin module (named in GRADPROM_PLUGINS): one more dataset and two more strategies, one of them
with a gradient path of its own (no edit of the trainer)."""

from __future__ import annotations

import torch

from gradprom.datasets import TaskData, get_dataset, register_dataset
from gradprom.strategies import Strategy, register_strategy, safe_cos
from gradprom.strategies.paths import Gradients, StepContext, cotangents


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


class ImageSpaceGate(Strategy):
    """Gate on the cotangents' cosine at the enhanced image, cos(∂L_IP/∂x̂, ∂L_VR/∂x̂), then take one VJP of
    u_ip + λ·w·u_vr: a plugin's strategy with its own, cheaper gradient path (no VJP to decide)."""

    name = "image_space_gate"

    def gradients(self, ctx: StepContext) -> Gradients:
        u_ip, u_tasks, g_rec = cotangents(ctx)
        combined = u_ip
        for gate, u in zip(ctx.gates, u_tasks, strict=True):
            a, b = u_ip.flatten(), u.flatten()
            gate.last_cos = safe_cos(a @ b, a @ a, b @ b).detach()
            gate.last_weight = (gate.last_cos >= 0).float()
            combined = combined + gate.lam * gate.last_weight * u
        return Gradients(ctx.vjp(ctx.theta, [combined], False)[0], [], g_rec)


register_strategy("image_space_gate", ImageSpaceGate)
