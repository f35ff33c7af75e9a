"""The GPU fast path: mixed precision, channels-last layout and optional `torch.compile`, resolved once per trial.

`auto` means bf16 autocast and channels-last on a CUDA GPU with bf16, and fp32 in the default layout on the
CPU (whether bf16 pays there depends on the CPU's bf16 units; `benchmarks/throughput.py --variants` measures it).
Channels-last runs on CUDA only: on the CPU, torch 2.13's channels-last convolution backward hangs or aborts the
process on some CPUs (seen on AVX2 machines without AVX-512, at small channel counts), so it is refused there.
Autocast covers the forward passes only; the parameters, their gradients, the cosine and the update stay
fp32, and the losses are taken on fp32 outputs, so the gate compares full-precision gradients.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gradprom.errors import GradpromError

CPU_CHANNELS_LAST = ("memory_format=channels_last runs on a CUDA GPU only (on the CPU its convolution backward "
                     "hangs or aborts on some CPUs); use memory_format=auto or contiguous there")


@dataclass(frozen=True)
class FastPath:
    """How a trial runs its forward passes (the resolved form of precision, memory_format and compile)."""

    device_type: str = "cpu"
    amp_dtype: torch.dtype | None = None  # autocast dtype, None = fp32
    channels_last: bool = False
    compile: str = "off"

    @classmethod
    def resolve(cls, precision: str, memory_format: str, compile_mode: str, device: torch.device) -> FastPath:
        cuda = device.type == "cuda"
        if precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
            raise GradpromError(f"precision bf16 was asked for but {torch.cuda.get_device_name(device)} has no bf16; "
                                "use --precision fp32")
        if memory_format == "channels_last" and not cuda:
            raise GradpromError(CPU_CHANNELS_LAST)
        bf16 = precision == "bf16" or (precision == "auto" and cuda and torch.cuda.is_bf16_supported())
        channels_last = memory_format == "channels_last" or (memory_format == "auto" and cuda)
        return cls(device.type, torch.bfloat16 if bf16 else None, channels_last, compile_mode)

    def describe(self) -> dict[str, str]:
        """What ran, as result columns (the config may say `auto`)."""
        return {"run_precision": "bf16" if self.amp_dtype is torch.bfloat16 else "fp32",
                "run_memory_format": "channels_last" if self.channels_last else "contiguous",
                "run_compile": self.compile}

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Forward passes under autocast when mixed precision is on (backward passes run outside it)."""
        on = self.amp_dtype is not None
        with torch.autocast(self.device_type, dtype=self.amp_dtype or torch.bfloat16, enabled=on):
            yield

    def layout(self, x: Tensor) -> Tensor:
        """An image batch in the layout the models were prepared for."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def prepare(self, model: nn.Module, compile: bool = True) -> nn.Module:
        """Put a model's weights in the chosen layout and (with `compile`) compile its forward, in place:
        parameters, state_dict keys and checkpoints stay those of the plain module."""
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        if compile and self.compile != "off":
            # the step backpropagates through the enhancer's graph more than once (retain_graph); inductor's
            # donated buffers would forbid that
            torch._functorch.config.donated_buffer = False
            model.forward = torch.compile(model.forward, backend=self.compile)  # type: ignore[method-assign]
        return model
