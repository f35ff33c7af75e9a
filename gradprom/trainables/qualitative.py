"""A finished trial brought back from its checkpoint, for looking at (no Ray, no training): the report's
qualitative view (degraded / enhanced / clean images and Grad-CAM of the recognizer on the enhanced image).

The test inputs are degraded exactly as the trial scored them (the same fixed stream), so the pictures are
the images behind the trial's `test_*` figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gradprom.datasets import TaskData, parse_degradation
from gradprom.models import create_model
from gradprom.trainables.build import build_data, create_enhancer, inputs_of, seeded_generator, semantic_guide
from gradprom.trainables.checkpoint import load_checkpoint
from gradprom.trainables.config import TrialConfig
from gradprom.trainables.reference import recognizer_spec


@dataclass
class Trained:
    """A trial's final enhancer and recognizer (eval mode, CPU) with its test split and degraded test inputs."""

    cfg: TrialConfig
    data: TaskData
    enhancer: nn.Module
    recognizer: nn.Module
    test_inputs: Tensor


def load_trained(config: dict[str, Any], checkpoint_dir: str | Path) -> Trained:
    """Rebuild the trial's models from its config and load the checkpoint's weights (weights_only)."""
    cfg = TrialConfig.from_dict({**config, "device": "cpu"})
    data = build_data(cfg)
    degradation = parse_degradation(cfg.degradation)
    state = load_checkpoint(checkpoint_dir)
    enhancer = create_enhancer(cfg, data, degradation.scale, semantic_guide(cfg, data, torch.device("cpu")))
    enhancer.load_state_dict(state["enhancer"])
    name, kwargs = recognizer_spec(cfg, data)
    recognizer = create_model(name, **kwargs)
    recognizer.load_state_dict(state["recognizer"])
    inputs = inputs_of(data.test, degradation, seeded_generator(torch.device("cpu"), cfg.seed, 202))
    return Trained(cfg, data, enhancer.eval(), recognizer.eval(), inputs)


def last_conv(model: nn.Module) -> nn.Module:
    """The model's last convolution: where Grad-CAM reads its activations (the deepest spatial features)."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no convolution for Grad-CAM")
    return convs[-1]


def grad_cam(model: nn.Module, images: Tensor, task: str) -> tuple[Tensor, Tensor]:
    """(heatmaps [N, H, W] scaled to [0, 1] per image, the class each explains) by captum's LayerGradCam on
    the last convolution. A segmenter explains the non-background class it predicts most (its mean logit)."""
    from captum.attr import LayerAttribution, LayerGradCam

    with torch.no_grad():
        logits = model(images)
    if task == "classification":
        forward, target = model, logits.argmax(1)
    else:
        def forward(x: Tensor) -> Tensor:
            return model(x).mean(dim=(2, 3))

        counts = torch.stack([(logits.argmax(1) == c).flatten(1).sum(1) for c in range(logits.shape[1])], 1)
        counts[:, 0] = -1  # background explains nothing worth seeing
        target = counts.argmax(1)
    cam = LayerGradCam(forward, last_conv(model)).attribute(images, target=target, relu_attributions=True)
    cam = LayerAttribution.interpolate(cam, tuple(images.shape[-2:]), interpolate_mode="bilinear")[:, 0].detach()
    peak = cam.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
    return (cam / peak).clamp(0, 1), target


def qualitative(trained: Trained, count: int = 4) -> dict[str, Tensor]:
    """The first `count` test images: degraded input, enhanced, clean, Grad-CAM on the enhanced image, labels."""
    x_in = trained.test_inputs[:count]
    with torch.no_grad():
        enhanced = trained.enhancer(x_in).clamp(0, 1)
    cam, explained = grad_cam(trained.recognizer, enhanced, trained.cfg.task)
    return {"input": x_in, "enhanced": enhanced, "clean": trained.data.test.images[:count], "cam": cam,
            "explained": explained, "targets": trained.data.test.targets[:count]}
