"""MONAI's networks by name: `--enhancer monai:BasicUNet`, `--recognizer monai:DenseNet121`.

A curated list, each entry tested in a real trial: 2-D (`spatial_dims=2`), channels and classes filled from the
dataset, sizes from gradprom's own width settings (`enhancer_channels`, `recognizer_width`, `recognizer_depth` where
a network has such a knob), and anything else from the trial settings `enhancer_args` / `recognizer_args`: the
network's own keyword arguments as space-separated KEY=VALUE pairs, lists with commas (`features=8,8,16,32,64,8
dropout=0.1`), checked against its signature. An enhancer is wrapped to restore: x + net(x), output channels =
input channels, its output layer scaled down at the start so the enhancer starts near the identity (as gradprom's
own do). No weights are ever downloaded: `pretrained=True` is refused. MONAI is imported when one is built.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gradprom.errors import GradpromError
from gradprom.registry import check_options

PREFIX = "monai:"
INIT_SCALE = 0.1  # the output layer's weights at the start: the residual begins near 0


@dataclass(frozen=True)
class Net:
    """One curated network: its MONAI class (or function), role and task, how gradprom's sizes become its
    arguments, the class whose signature also counts where it takes **kwargs, and its one line of help."""

    name: str
    role: str
    task: str | None
    sized: Callable[[int, int, int, int], dict[str, Any]]  # (in, out, width, depth) -> kwargs
    help: str
    then: str = ""  # e.g. resnet18(**kwargs) -> ResNet(...): its arguments are valid too
    fixed: tuple[str, ...] = ("spatial_dims", "in_channels", "out_channels")


def _levels(width: int, depth: int, default: int = 3) -> tuple[int, ...]:
    return tuple(width * 2 ** i for i in range((depth or default) + 1))


NETS = (
    Net("BasicUNet", "enhancer", None, lambda i, o, w, d: {"features": (w, w, 2 * w, 4 * w, 8 * w, w)},
        "MONAI BasicUNet (4 levels) as a residual restorer; width from enhancer_channels"),
    Net("UNet", "enhancer", None, lambda i, o, w, d: {"channels": _levels(w, 0), "strides": (2, 2, 2),
                                                       "num_res_units": 1},
        "MONAI UNet (3 levels, residual units) as a residual restorer; width from enhancer_channels"),
    Net("SegResNet", "enhancer", None, lambda i, o, w, d: {"init_filters": max(8, -(-w // 8) * 8)},
        "MONAI SegResNet as a residual restorer; init_filters from enhancer_channels (a multiple of 8)"),
    Net("DenseNet121", "recognizer", "classification", lambda i, o, w, d: {},
        "MONAI DenseNet121 classifier (fixed size: recognizer_width/depth do not apply)", then="DenseNet"),
    Net("resnet18", "recognizer", "classification", lambda i, o, w, d: {},
        "MONAI ResNet-18 classifier (fixed size)", then="ResNet",
        fixed=("spatial_dims", "n_input_channels", "num_classes")),
    Net("resnet34", "recognizer", "classification", lambda i, o, w, d: {},
        "MONAI ResNet-34 classifier (fixed size)", then="ResNet",
        fixed=("spatial_dims", "n_input_channels", "num_classes")),
    Net("SEResNet50", "recognizer", "classification", lambda i, o, w, d: {},
        "MONAI SE-ResNet-50 classifier (fixed size)", then="SENet",
        fixed=("spatial_dims", "in_channels", "num_classes")),
    Net("UNet", "recognizer", "segmentation", lambda i, o, w, d: {"channels": _levels(w, d),
                                                                  "strides": (2,) * (d or 3), "num_res_units": 2},
        "MONAI UNet segmenter; width from recognizer_width, down levels from recognizer_depth (default 3)"),
    Net("BasicUNet", "recognizer", "segmentation", lambda i, o, w, d: {"features": (w, w, 2 * w, 4 * w, 8 * w, w)},
        "MONAI BasicUNet segmenter (4 levels); width from recognizer_width"),
    Net("SegResNet", "recognizer", "segmentation", lambda i, o, w, d: {"init_filters": max(8, -(-w // 8) * 8)},
        "MONAI SegResNet segmenter; init_filters from recognizer_width (a multiple of 8)"),
    Net("AttentionUnet", "recognizer", "segmentation", lambda i, o, w, d: {"channels": _levels(w, d),
                                                                          "strides": (2,) * (d or 3)},
        "MONAI Attention U-Net segmenter; width from recognizer_width, down levels from recognizer_depth"),
)


def accepted(net: Net) -> dict[str, Any]:
    """The keyword arguments the network takes (its own, and its base class's where it forwards **kwargs), less the
    ones gradprom fills, with their defaults."""
    import monai.networks.nets as nets

    names: dict[str, Any] = {}
    for target in (getattr(nets, net.name), getattr(nets, net.then) if net.then else None):
        if target is None:
            continue
        params = inspect.signature(target.__init__ if isinstance(target, type) else target).parameters
        names.update({k: p.default for k, p in params.items() if k != "self"
                      and p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)})
    for filled in (*net.fixed, "block", "layers", "block_inplanes", "progress"):
        names.pop(filled, None)
    return names


def build(net: Net, in_channels: int, out_channels: int, width: int, depth: int, args: dict[str, Any]) -> nn.Module:
    """The MONAI network `net` with its sizes filled in and `args` (checked) on top; one line for any refusal."""
    import monai.networks.nets as nets

    what = f"model '{PREFIX}{net.name}'"
    filled = [k for k in args if k in net.fixed]
    if filled:
        raise GradpromError(f"{what}: {filled[0]} is filled from the dataset; leave it out of the model's args")
    if args.get("pretrained"):
        raise GradpromError(f"{what}: pretrained=True would download weights, which gradprom never does; train from "
                            "scratch (pretrained=false) or load your weights in a plugin model")
    check_options(what, args, accepted(net))
    spatial, channels, classes = net.fixed
    kwargs = {spatial: 2, channels: in_channels, classes: out_channels, **net.sized(in_channels, out_channels,
                                                                                    width, depth), **args}
    try:
        return getattr(nets, net.name)(**kwargs)
    except (TypeError, ValueError, AssertionError, RuntimeError) as exc:
        raise GradpromError(f"{what} cannot be built with {sorted(args.items()) or 'its defaults'}: "
                            f"{' '.join(str(exc).split())}") from None


class Restorer(nn.Module):
    """A MONAI network as a restoring enhancer: x + net(x). `head` names the module whose parameters `gate_on=head`
    gates on (default: the last registered module with parameters of its own, the output convolution in these
    networks); its weights start scaled by INIT_SCALE and its bias at zero, so the enhancer starts near the
    identity."""

    def __init__(self, net: nn.Module, head: str = "") -> None:
        super().__init__()
        self.net = net
        modules = dict(net.named_modules())
        if head and head not in modules:
            close = difflib.get_close_matches(head, list(modules), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise GradpromError(f"head_layer '{head}' is not a module of {type(net).__name__}.{hint}")
        self.head = head or next(name for name, m in reversed(list(modules.items()))
                                 if any(True for _ in m.parameters(recurse=False)))
        with torch.no_grad():
            for name, p in modules[self.head].named_parameters(recurse=False):
                p.zero_() if name == "bias" else p.mul_(INIT_SCALE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)

    def gate_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.net.get_submodule(self.head).parameters(recurse=False) if p.requires_grad]


def factory(entries: list[Net]) -> Callable[..., nn.Module]:
    """One factory for a MONAI class in its roles: called as every enhancer is, `(in_channels, blocks, channels,
    scale, **args)` (`head_layer` is the wrapper's), or as every recognizer is, `(in_channels, num_classes, width,
    depth, **args)`."""
    by_role = {net.role: net for net in entries}

    def create(in_channels: int, num_classes: int = 0, width: int = 16, depth: int = 0, blocks: int = 4,
               channels: int = 16, scale: int = 1, head_layer: str = "", **args: Any) -> nn.Module:
        if num_classes:  # built as a recognizer
            return build(by_role["recognizer"], in_channels, num_classes, width, depth, args)
        net = by_role["enhancer"]
        if scale != 1:
            raise GradpromError(f"model '{PREFIX}{net.name}' restores at scale 1; for super-resolution "
                                "(a downsample degradation) use srresnet or sesr")
        return Restorer(build(net, in_channels, in_channels, channels, 0, args), head_layer)

    return create


def register_all(register: Callable[..., Callable[[Any], Any]]) -> None:
    """Register every curated network as `monai:NAME`, once per class: a class listed as enhancer and segmenter
    (UNet, BasicUNet, SegResNet) is one entry of both roles."""
    for name in dict.fromkeys(net.name for net in NETS):
        entries = [net for net in NETS if net.name == name]
        task = next((net.task for net in entries if net.role == "recognizer"), None)
        help_text = "; ".join(net.help for net in entries)
        register(f"{PREFIX}{name}", role=",".join(net.role for net in entries), task=task,
                 help=help_text)(factory(entries))
