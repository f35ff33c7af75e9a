"""Model registry (timm style): a name on the command line maps to one factory function.

Meta on every entry: `role` ("enhancer" | "recognizer"), `task` (None for enhancers, else
"classification" | "segmentation") and `help` (one line for `--help` and results tables).
Enhancers with `guided=True` also take `guide=` (a frozen clean-trained recognizer with `encode`).
Users add their own with `@register_model("name", role=..., task=..., help=...)`.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from torch import nn

from gradprom.errors import GradpromError
from gradprom.models.enhancers import SRResNet, srresnet
from gradprom.models.recognizers import ResNet, UNet, resnet, unet
from gradprom.models.sesr import SESR, sesr
from gradprom.registry import Registry

__all__ = [
    "MODELS",
    "ROLES",
    "TASKS",
    "SESR",
    "ResNet",
    "SRResNet",
    "UNet",
    "create_model",
    "default_recognizer",
    "model_defaults",
    "model_names",
    "register_model",
]

ROLES = ("enhancer", "recognizer")
TASKS = ("classification", "segmentation")
_DEFAULT_RECOGNIZER = {"classification": "resnet", "segmentation": "unet"}

MODELS: Registry[nn.Module] = Registry("model")
register_model = MODELS.register

register_model(
    "srresnet",
    srresnet,
    role="enhancer",
    task=None,
    help="SRResNet/EDSR-style residual enhancer (no BatchNorm); scale 1 restores, 2/4 super-resolve",
)
register_model(
    "sesr",
    sesr,
    role="enhancer",
    task=None,
    guided=True,
    help="semantic-guided SR: dynamic conv + polarized attention, fused with a frozen recognizer's encoder",
)
register_model(
    "resnet",
    resnet,
    role="recognizer",
    task="classification",
    help="small ResNet-10/18/34 classifier for 32-128 px images",
)
register_model(
    "unet",
    unet,
    role="recognizer",
    task="segmentation",
    help="UNet segmenter with 1-5 down levels; image sides must be divisible by 2**depth",
)


def _options(name: str) -> tuple[dict[str, inspect.Parameter], bool]:
    """The factory's keyword options, and whether it also takes **kwargs (then any key is allowed)."""
    params = inspect.signature(MODELS.get(name)).parameters
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    opts = {
        k: p
        for k, p in params.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    return opts, var_kw


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build model `name`; unknown names and options fail with one line listing the valid ones."""
    opts, var_kw = _options(name)
    if not var_kw:
        for key in kwargs:
            if key not in opts:
                close = difflib.get_close_matches(key, list(opts), n=1)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                raise GradpromError(
                    f"model '{name}' has no option '{key}'.{hint} Valid options: {', '.join(opts) or 'none'}"
                )
    return MODELS.create(name, **kwargs)


def model_names(role: str | None = None, task: str | None = None) -> list[str]:
    """Registered model names, optionally only one role and/or task (enhancers have task None)."""
    if role is not None and role not in ROLES:
        raise GradpromError(f"unknown model role '{role}'. Valid roles: {', '.join(ROLES)}")
    if task is not None and task not in TASKS:
        raise GradpromError(f"unknown task '{task}'. Valid tasks: {', '.join(TASKS)}")
    where = {k: v for k, v in (("role", role), ("task", task)) if v is not None}
    return MODELS.names(**where)


def model_defaults(name: str) -> dict[str, Any]:
    """Default options from the factory signature, so cache keys and results tables are complete."""
    opts, _ = _options(name)
    return {k: p.default for k, p in opts.items() if p.default is not inspect.Parameter.empty}


def default_recognizer(task: str) -> str:
    """The recognizer a trial uses when the user names none for a dataset's task."""
    if task not in _DEFAULT_RECOGNIZER:
        raise GradpromError(f"unknown task '{task}'. Valid tasks: {', '.join(TASKS)}")
    return _DEFAULT_RECOGNIZER[task]
