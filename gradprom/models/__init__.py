"""Model registry (timm style): a name on the command line maps to one factory function.

Each entry's metadata is a `ModelMeta`: `role`, `task`, `guided`, `help` and the trial `settings` its factory
reads. Users add their own with `@register_model("name", role=..., task=..., help=...)`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from torch import nn

from gradprom.errors import GradpromError
from gradprom.models.enhancers import SRResNet, srresnet
from gradprom.models.monai_nets import register_all as register_monai
from gradprom.models.recognizers import ResNet, UNet, resnet, unet
from gradprom.models.sesr import SESR, sesr
from gradprom.registry import Meta, Registry

__all__ = [
    "MODELS",
    "ROLES",
    "TASKS",
    "SESR",
    "ResNet",
    "SRResNet",
    "UNet",
    "ModelMeta",
    "create_model",
    "default_recognizer",
    "model_defaults",
    "model_names",
    "register_model",
]

ROLES = ("enhancer", "recognizer")
TASKS = ("classification", "segmentation")
_DEFAULT_RECOGNIZER = {"classification": "resnet", "segmentation": "unet"}

@dataclass(frozen=True, kw_only=True)
class ModelMeta(Meta):
    """A model's entry: its `role` ("enhancer" | "recognizer", or "enhancer,recognizer" for a network that serves
    both, e.g. a UNet: its factory is then called as either), its `task` as a recognizer (None for enhancers),
    whether an enhancer is `guided` (also takes `guide=`, a frozen clean-trained recognizer with `encode`). Its
    `settings` are trial settings its factory takes as keyword options."""

    role: str
    task: str | None = None
    guided: bool = False

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(self.role.split(","))

    def __post_init__(self) -> None:
        if not self.roles or any(r not in ROLES for r in self.roles):
            raise GradpromError(f"a model's role must be one of {', '.join(ROLES)} (or both, comma-separated), got "
                                f"'{self.role}'")
        if self.task is not None and self.task not in TASKS:
            raise GradpromError(f"a model's task must be one of {', '.join(TASKS)} or None, got '{self.task}'")


MODELS: Registry[nn.Module, ModelMeta] = Registry("model", ModelMeta)
register_model = MODELS.register

register_model(
    "srresnet", role="enhancer",
    help="SRResNet/EDSR-style residual enhancer (no BatchNorm); scale 1 restores, 2/4 super-resolve",
)(srresnet)
register_model(
    "sesr", role="enhancer", guided=True,
    help="semantic-guided SR: dynamic conv + polarized attention, fused with a frozen recognizer's encoder",
)(sesr)
register_model(
    "resnet", role="recognizer", task="classification",
    help="small ResNet-10/18/34 classifier for 32-128 px images",
)(resnet)
register_model(
    "unet", role="recognizer", task="segmentation",
    help="UNet segmenter with 1-5 down levels; image sides must be divisible by 2**depth",
)(unet)
register_monai(register_model)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build model `name`; unknown names and options fail with one line listing the valid ones."""
    return MODELS.create(name, **kwargs)


def model_names(role: str | None = None, task: str | None = None) -> list[str]:
    """Registered model names, optionally only one role and/or task (enhancers have task None)."""
    if role is not None and role not in ROLES:
        raise GradpromError(f"unknown model role '{role}'. Valid roles: {', '.join(ROLES)}")
    if task is not None and task not in TASKS:
        raise GradpromError(f"unknown task '{task}'. Valid tasks: {', '.join(TASKS)}")
    return MODELS.names(lambda m: (role is None or role in m.roles) and (task is None or m.task == task))


def model_defaults(name: str) -> dict[str, Any]:
    """Default options from the factory signature, so cache keys and results tables are complete."""
    return {k: v for k, v in (MODELS.options(name) or {}).items() if v is not inspect.Parameter.empty}


def default_recognizer(task: str) -> str:
    """The recognizer a trial uses when the user names none for a dataset's task."""
    if task not in _DEFAULT_RECOGNIZER:
        raise GradpromError(f"unknown task '{task}'. Valid tasks: {', '.join(TASKS)}")
    return _DEFAULT_RECOGNIZER[task]
