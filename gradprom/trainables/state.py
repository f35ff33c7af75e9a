"""What a task-driven trial's checkpoint holds, and loading it back."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from gradprom.trainables.build import Trial


def trial_state(t: Trial, epoch: int, metrics: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint holds: models, optimisers, and the epoch's report (re-sent if a trial that had
    finished is restored, so its final figures stay exactly what they were)."""
    return {
        "epoch": epoch,
        "metrics": metrics,
        "enhancer": t.enhancer.state_dict(),
        "recognizer": t.recognizer.state_dict(),
        "opt_enhancer": t.opt_enhancer.state_dict(),
        "opt_recognizer": t.opt_recognizer.state_dict() if t.opt_recognizer else {},
        # the gates' state between steps (EMA, last decisions, the step count gate_every counts by)
        "strategy": t.strategy.state_dict(),
        **({"aux_recognizer": t.aux.recognizer.state_dict(), "aux_strategy": t.aux.strategy.state_dict(),
            "opt_aux": t.aux.opt.state_dict() if t.aux.opt else {}} if t.aux else {}),
    }


def restore_state(t: Trial, state: dict[str, Any]) -> int:
    """Load a checkpoint into the trial; returns the last finished epoch."""
    t.enhancer.load_state_dict(state["enhancer"])
    t.recognizer.load_state_dict(state["recognizer"])
    t.opt_enhancer.load_state_dict(state["opt_enhancer"])
    if t.opt_recognizer is not None and state["opt_recognizer"]:
        t.opt_recognizer.load_state_dict(state["opt_recognizer"])
    # checkpoints written before the strategies kept their own step count held it beside their state
    legacy = {"steps": torch.tensor(state["steps_done"])} if "steps_done" in state else {}
    t.strategy.load_state_dict(_on({**legacy, **state["strategy"]}, t.device))
    if t.aux is not None:
        t.aux.recognizer.load_state_dict(state["aux_recognizer"])
        t.aux.strategy.load_state_dict(_on(state["aux_strategy"], t.device))
        if t.aux.opt is not None and state["opt_aux"]:
            t.aux.opt.load_state_dict(state["opt_aux"])
    return int(state["epoch"])


def _on(state: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    """A strategy's checkpointed tensors (loaded on the CPU) on the trial's device."""
    return {k: v.to(device) for k, v in state.items()}


